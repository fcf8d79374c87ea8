"""Real deployment on loopback: a gRPC server and remote clients, as processes and as threads."""

import datetime
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch

import fedforge
from fedforge.algorithms.base import ClientResult
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy import fedforge_pb2_grpc as rpc
from fedforge.deploy.client import OWN_CONNECTION, RemoteClient, ServerLost
from fedforge.deploy.codec import PROTOCOL, Kind, decode, encode, result_payload
from fedforge.records import MODEL
from fedforge.tracking import load_client_rounds, load_events, load_metrics, load_runs
from tests.loopback import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedforge", *map(str, args)], cwd=ROOT, text=True, **kwargs)


def digits(runs_dir, clients=3, rounds=5, *extra):
    return [
        "configs/digits_fedavg.yaml",
        f"data.num_clients={clients}",
        f"train.rounds={rounds}",
        f"tracking.runs_dir={runs_dir}",
        "backend.device=cpu",
        *extra,
    ]


def test_three_client_processes_match_the_simulation_and_a_wrong_token_is_refused(runs_dir, tmp_path):
    port = free_port()
    (tmp_path / "tokens").write_text("federation-secret\n")
    (tmp_path / "wrong").write_text("guessed\n")
    server = cli(
        "serve",
        *digits(runs_dir),
        "--address",
        f"127.0.0.1:{port}",
        "--token-file",
        tmp_path / "tokens",
        "--quiet",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    join = ["join", "--server", f"127.0.0.1:{port}", "--device", "cpu", "--quiet"]
    intruder = cli(*join, "--token-file", tmp_path / "wrong", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    clients = [cli(*join, "--token-file", tmp_path / "tokens", stdout=subprocess.DEVNULL) for _ in range(3)]
    out, errors = server.communicate(timeout=900)
    assert server.returncode == 0, errors
    assert all(c.wait(timeout=120) == 0 for c in clients)
    _, refused = intruder.communicate(timeout=300)
    assert intruder.returncode == 2 and "UNAUTHENTICATED" in refused and "wrong token" in refused

    served = load_runs(runs_dir)[0]
    same = {"data.num_clients": 3, "train.rounds": 5, "tracking.runs_dir": str(runs_dir), "backend.device": "cpu"}
    simulated = fedforge.run("configs/digits_fedavg.yaml", quiet=True, **same)
    assert abs(served["summary"]["final_accuracy"] - simulated.final_accuracy) <= 0.01  # the issue allows 1 point
    assert served["summary"]["final_accuracy"] > 0.9
    assert f"{served['summary']['final_accuracy']:.4f}" in out


def serve_in_thread(runs_dir, port, **extra):
    """`fedforge.run` with backend remote in a thread; returns (thread, holder of its result or error)."""
    config = {
        "data": {"num_clients": extra.pop("clients", 3)},
        "train": {"rounds": extra.pop("rounds", 2), "local_epochs": 1},
        "tracking": {"runs_dir": str(runs_dir)},
        "backend": {"kind": "remote", "address": f"127.0.0.1:{port}", "device": "cpu", **extra.pop("backend", {})},
        **extra,
    }
    holder = {}

    def target():
        try:
            holder["result"] = fedforge.run(quiet=True, **config)
        except BaseException as err:  # surfaced by the test
            holder["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, holder


def honest_client(port, client_id, **kwargs):
    client = RemoteClient(f"127.0.0.1:{port}", {"backend": {"device": "cpu"}}, client_id, quiet=True, **kwargs)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    return thread


def attacker(port, client_id, rounds):
    """A hand-written client: joins properly, then uploads NaN weights, then a stream that lies about its size."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        reply = stub.Join(pb.JoinRequest(protocol=PROTOCOL, client_id=client_id))
        served = 0
        while served < rounds:
            job = decode(stub.NextJob(pb.SessionRef(session=reply.session)), max_bytes=2**30)
            if job.kind != Kind.JOB:
                continue
            weights = job.tensors[MODEL].clone()
            if served == 0:
                weights[::7] = float("nan")
                chunks = encode(
                    result_payload(ClientResult(client_id, {MODEL: weights}, 100), reply.session, job.round)
                )
            else:
                chunks = list(
                    encode(result_payload(ClientResult(client_id, {MODEL: weights}, 100), reply.session, job.round))
                )
                chunks = [chunks[0], pb.Chunk(data=chunks[1].data[:100])]  # far fewer bytes than declared
            stub.SubmitResult(iter(chunks))
            served += 1


def test_nan_and_malformed_uploads_are_dropped_with_events_and_rounds_complete(runs_dir):
    port = free_port()
    server, holder = serve_in_thread(runs_dir, port, backend={"compression": "gzip"})
    wait_until_listening(port)
    honest = [honest_client(port, cid, compression="gzip") for cid in (0, 1)]
    attacker(port, 2, rounds=2)
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    result = holder["result"]
    events = {(e["round"], e["client_id"], e["kind"]): e["reason"] for e in load_events(result.run_dir)}
    assert "NaN" in events[(1, 2, "rejected_update")]  # rounds are numbered from 1
    assert "malformed upload" in events[(2, 2, "client_failed")]
    assert result.summary["rounds"] == 2 and result.final_accuracy > 0.5  # the honest clients' model
    for thread in honest:
        thread.join(timeout=30)


def test_a_client_killed_mid_round_does_not_stop_the_round(runs_dir):
    port = free_port()
    server = cli(
        "serve",
        *digits(runs_dir, 3, 3, "train.local_epochs=60", "backend.heartbeat_seconds=1", "backend.heartbeat_timeout=15"),
        "--address",
        f"127.0.0.1:{port}",
        "--min-clients",
        "2",
        "--quiet",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    join = ["join", "--server", f"127.0.0.1:{port}", "--device", "cpu"]
    survivors = [cli(*join, "--client-id", cid, stdout=subprocess.DEVNULL) for cid in (0, 1)]
    victim = cli(*join, "--client-id", 2, stdout=subprocess.PIPE)
    for line in victim.stdout:
        if line.startswith("round 2: training"):  # round 2: by then it surely took part (min-clients 2)
            victim.kill()  # mid-round: it holds its job and will never answer
            break
    out, errors = server.communicate(timeout=900)
    assert server.returncode == 0, errors
    assert all(s.wait(timeout=120) == 0 for s in survivors)
    run = load_runs(runs_dir)[0]
    assert run["status"] == "finished" and run["summary"]["rounds"] == 3
    failed = {(e["round"], e["client_id"]): e["reason"] for e in load_events(Path(run["run_dir"]))}
    assert "disconnected" in failed[(2, 2)]  # rounds are numbered from 1, as the client's log says
    assert "not connected" in failed[(3, 2)]


def test_a_resnet18_larger_than_grpcs_message_limit_completes_a_round(runs_dir):
    port = free_port()
    server, holder = serve_in_thread(
        runs_dir,
        port,
        clients=1,
        rounds=1,
        model={"name": "resnet18"},
        data={"num_clients": 1, "image_size": 16, "train_fraction": 0.05},
        eval={"personalized": False},
    )
    wait_until_listening(port)
    client = honest_client(port, 0)
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    summary = holder["result"].summary
    assert summary["bytes_down"] > 40 * 2**20 and summary["bytes_up"] > 40 * 2**20  # ~45 MB each way
    client.join(timeout=30)


def self_signed(tmp_path):
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it (PEM files)."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedforge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(1))
        .add_extension(names, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_tls_with_a_self_signed_ca(runs_dir, tmp_path):
    pem = self_signed(tmp_path)
    port = free_port()
    tls = {"tls_cert": str(pem["cert"]), "tls_key": str(pem["key"])}
    server, holder = serve_in_thread(runs_dir, port, clients=1, rounds=1, backend=tls)
    wait_until_listening(port)
    with pytest.raises(ServerLost):  # a plain-text client cannot talk to a TLS server
        RemoteClient(f"127.0.0.1:{port}", {"backend": {"device": "cpu"}}, 0, quiet=True, retry_seconds=2).run()
    trusted = RemoteClient(f"localhost:{port}", {"backend": {"device": "cpu"}}, 0, ca=str(pem["ca"]), quiet=True)
    assert trusted.run() == 1
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    assert torch.isfinite(torch.tensor(holder["result"].final_accuracy))


def test_a_killed_server_resumes_and_its_clients_rejoin(runs_dir):
    port = free_port()
    args = digits(runs_dir, 3, 8, "tracking.name=served", "backend.heartbeat_seconds=0.5")
    server = cli("serve", *args, "--address", f"127.0.0.1:{port}", "--quiet", stdout=subprocess.DEVNULL)
    join = ["join", "--server", f"127.0.0.1:{port}", "--device", "cpu", "--quiet"]
    clients = [cli(*join, "--client-id", cid, stdout=subprocess.DEVNULL) for cid in range(3)]
    db, deadline = runs_dir / "runs.db", time.monotonic() + 600
    while time.monotonic() < deadline and rounds_done(db) < 3:
        time.sleep(0.1)
    server.kill()  # SIGKILL: no clean shutdown, clients see the server vanish
    server.wait()
    resumed = cli("resume", runs_dir / "served", "--quiet", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, errors = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, errors
    assert all(c.wait(timeout=300) == 0 for c in clients)  # they reconnected and served to the end
    kinds = [e["kind"] for e in load_events(runs_dir / "served")]
    assert "resume" in kinds
    same = {"data.num_clients": 3, "train.rounds": 8, "tracking.runs_dir": str(runs_dir), "backend.device": "cpu"}
    simulated = fedforge.run("configs/digits_fedavg.yaml", quiet=True, **same)
    served = float(out.split("final accuracy: ")[1].split()[0])
    assert abs(served - simulated.final_accuracy) <= 0.01


def rounds_done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def laggard(port, client_id, stop: threading.Event):
    """Joins, fetches its jobs, keeps its heartbeat going, and never answers: alive but too slow."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        reply = stub.Join(pb.JoinRequest(protocol=PROTOCOL, client_id=client_id))
        session = pb.SessionRef(session=reply.session)
        fetched = 0
        while not stop.wait(0.2):
            try:
                stub.Heartbeat(session, timeout=5)
                if fetched < 2:
                    job = decode(stub.NextJob(session, timeout=10), max_bytes=2**30)
                    fetched += job.kind == Kind.JOB
            except grpc.RpcError:
                return  # the server is gone: the federation ended
    return fetched


def test_a_live_client_that_misses_the_deadline_is_dropped_and_own_data_clients_train(runs_dir):
    port = free_port()
    # A generous heartbeat timeout: on a busy machine an honest client's beats may come late.
    backend = {"round_timeout": 4, "heartbeat_seconds": 0.5, "heartbeat_timeout": 30}
    server, holder = serve_in_thread(runs_dir, port, clients=2, rounds=2, backend=backend)
    wait_until_listening(port)
    stop = threading.Event()
    slow = threading.Thread(target=laggard, args=(port, 1, stop), daemon=True)
    slow.start()
    own = RemoteClient(
        f"127.0.0.1:{port}",
        {"backend": {"device": "cpu"}, "data": {"num_clients": 1, "train_fraction": 0.3}},
        0,
        quiet=True,
    )
    assert own.run() == 2
    server.join(timeout=900)
    stop.set()
    slow.join(timeout=30)
    assert "error" not in holder, holder.get("error")
    result = holder["result"]
    events = {(e["round"], e["client_id"], e["kind"]): e["reason"] for e in load_events(result.run_dir)}
    assert "missed the round deadline" in events[(1, 1, "client_failed")]
    assert "missed the round deadline" in events[(2, 1, "client_failed")]
    assert result.final_accuracy > 0.5  # learned from client 0's own data alone


def test_a_class_continual_target_run_over_grpc_matches_the_simulation(runs_dir):
    """Clients rebuild the task stream from the server's config; teacher and uint8 synthetic set travel as extras."""
    stream = {
        "continual": {"tasks": 2, "rounds_per_task": 2, "classes_per_task": 2},
        "algorithm": {"name": "target", "synthesis_rounds": 3, "warmup": 1, "generator_steps": 5, "student_steps": 3},
        "eval": {"personalized": False},
    }
    port = free_port()
    server, holder = serve_in_thread(runs_dir, port, clients=2, rounds=4, **stream)
    wait_until_listening(port)
    clients = [honest_client(port, cid) for cid in (0, 1)]
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    served = holder["result"].summary
    simulated = fedforge.run(
        quiet=True,
        data={"num_clients": 2},
        train={"rounds": 4, "local_epochs": 1},
        tracking={"runs_dir": str(runs_dir)},
        backend={"device": "cpu"},
        **stream,
    ).summary
    assert [len(row) for row in served["continual"]["accuracy_matrix"]] == [1, 2]
    for got, want in zip(served["continual"]["seen_accuracy"], simulated["continual"]["seen_accuracy"], strict=True):
        assert abs(got - want) <= 0.01
    assert served["synthesis"][0]["synthetic_images"] == 3 * 128
    for thread in clients:
        thread.join(timeout=30)


def attack_run(runs_dir, attack, **backend):
    """The simulated federation `test_attacks_act_the_same_over_grpc` is compared with."""
    return fedforge.run(
        quiet=True,
        data={"num_clients": 3},
        train={"rounds": 2, "local_epochs": 1},
        tracking={"runs_dir": str(runs_dir)},
        backend={"device": "cpu", **backend},
        aggregation={"name": "median"},
        attack=attack,
    )


def served_and_simulated(runs_dir, rounds, **method):
    """The same 3-client experiment served to honest remote clients and simulated: (served, simulated,
    the client threads)."""
    port = free_port()
    server, holder = serve_in_thread(runs_dir / "served", port, clients=3, rounds=rounds, **method)
    wait_until_listening(port)
    clients = [honest_client(port, cid) for cid in range(3)]
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    simulated = fedforge.run(
        quiet=True,
        data={"num_clients": 3},
        train={"rounds": rounds, "local_epochs": 1},
        tracking={"runs_dir": str(runs_dir / "simulated")},
        backend={"device": "cpu"},
        **method,
    )
    return holder["result"], simulated, clients


def client_losses(run_dir):
    return {(r["round"], r["client_id"]): r["train_loss"] for r in load_client_rounds(run_dir)}


def test_attacks_act_the_same_over_grpc(runs_dir):
    """label_flip travels in the job (the remote client trains on flipped labels itself); the attackers
    are the simulation's and are recorded; the robust aggregator reduces what arrived over the wire."""
    attack = {"kind": "label_flip", "fraction": 0.34}
    port = free_port()
    server, holder = serve_in_thread(runs_dir / "served", port, aggregation={"name": "median"}, attack=attack)
    wait_until_listening(port)
    clients = [honest_client(port, cid) for cid in range(3)]
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    served = holder["result"]
    simulated = attack_run(runs_dir / "simulated", attack)
    honest = attack_run(runs_dir / "honest", None)

    def attackers(result):
        return [(e["round"], e["client_id"]) for e in load_events(result.run_dir) if e["kind"] == "byzantine"]

    assert attackers(served) == attackers(simulated) and len(attackers(served)) == 2  # one of 3 per round
    got, want, clean = client_losses(served.run_dir), client_losses(simulated.run_dir), client_losses(honest.run_dir)
    assert got.keys() == want.keys()
    for key in got:
        assert abs(got[key] - want[key]) < 1e-3, key  # clients trained as in the simulation (threads aside)
    first = attackers(served)[0]
    assert abs(got[first] - clean[first]) > 0.05  # and the attacker really trained on flipped labels
    assert served.config.aggregation.name == "median"
    for client in clients:
        client.join(timeout=60)


def test_federated_detection_with_fedexchange_over_grpc_matches_the_simulation(runs_dir):
    """Boxes stay on the clients (each rebuilds the scenes from the server's config); the exchange
    round's swapped models travel to the right clients; the clients train as in the simulation."""
    detection = {
        "data": {"name": "scenes", "num_clients": 4, "partition": {"kind": "domain"}, "train_fraction": 0.05},
        "task": {"name": "detection"},
        "model": {"name": "fcos_tiny", "width": 8, "head_channels": 32},
        "algorithm": {"name": "fedexchange", "exchange_every": 2, "clusters": 2},
        "eval": {"batch_size": 50},
    }
    port = free_port()
    served_dir, simulated_dir = runs_dir / "served", runs_dir / "simulated"
    server, holder = serve_in_thread(served_dir, port, clients=4, rounds=3, **detection)
    wait_until_listening(port)
    clients = [honest_client(port, cid) for cid in range(4)]
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    served = holder["result"]
    simulated = fedforge.run(
        quiet=True,
        train={"rounds": 3, "local_epochs": 1},
        tracking={"runs_dir": str(simulated_dir)},
        backend={"device": "cpu"},
        **{**detection, "data": {**detection["data"], "num_clients": 4}},
    )
    got, want = client_losses(served.run_dir), client_losses(simulated.run_dir)
    assert got.keys() == want.keys() and len(got) == 12
    for key in got:  # round 3 starts from the exchanged models: equal losses mean each got the right one
        assert abs(got[key] - want[key]) < 1e-3, key
    assert served.config.task.name == "detection"
    assert abs(served.summary["final_metric"] - simulated.summary["final_metric"]) <= 0.01
    for client in clients:
        client.join(timeout=60)


def test_scaffold_over_grpc_keeps_control_variates_on_the_clients_and_matches_the_simulation(runs_dir):
    """The server's control travels in the job, each client's c_i stays in its own process, and
    dc_i comes back as a named entry reduced by its sum: rounds 2 and 3 train as in the simulation
    only if all three are right."""
    method = {"algorithm": {"name": "scaffold"}, "eval": {"personalized": False}}
    served, simulated, clients = served_and_simulated(runs_dir, rounds=3, **method)
    got, want = client_losses(served.run_dir), client_losses(simulated.run_dir)
    assert got.keys() == want.keys() and len(got) == 9
    for key in got:
        assert abs(got[key] - want[key]) < 1e-3, key
    assert abs(served.final_accuracy - simulated.final_accuracy) < 0.02
    for client in clients:
        client.join(timeout=60)


@pytest.mark.parametrize(
    "algorithm",
    [{"name": "fedrolex", "capacities": {1.0: 0.34, 0.5: 0.33, 0.25: 0.33}},
     {"name": "fedmef", "adjust_every": 1, "adjust_until": 1.0}],
    ids=["fedrolex", "fedmef"],
)  # fmt: skip
def test_sub_models_over_grpc_match_the_simulation(runs_dir, algorithm):
    """FedRolex: a remote client builds the sub-model its job's width names, trains it and uploads only
    that part. FedMef: the mask travels as a uint8 bit set, the client sends its active weights (and the
    dense gradient when the mask is adjusted). The server averages the parts per position: every
    client's loss, the bytes and the final metrics are the simulation's."""
    method = {"algorithm": algorithm, "eval": {"personalized": False}}
    served, simulated, clients = served_and_simulated(runs_dir, rounds=3, **method)
    got, want = client_losses(served.run_dir), client_losses(simulated.run_dir)
    assert got.keys() == want.keys() and len(got) == 9
    for key in got:
        assert abs(got[key] - want[key]) < 1e-3, key
    full_model = 4 * sum(p.numel() for p in served.model.parameters())  # bytes, every client dense and whole
    assert served.summary["bytes_up"] == simulated.summary["bytes_up"]
    if algorithm["name"] == "fedrolex":
        assert served.summary["bytes_up"] < 0.5 * 3 * 3 * full_model
    for name, value in simulated.summary["final_metrics"].items():
        assert abs(served.summary["final_metrics"][name] - value) < 0.02, name
    for client in clients:
        client.join(timeout=60)


def test_secure_aggregation_over_grpc_ends_with_the_simulations_model(runs_dir):
    """The clients mask their updates; the server routes keys and shares and sees only masked vectors,
    yet the federation ends where the simulation with the same seeds does (the stochastic rounding is
    seeded per client and round; the masks cancel exactly)."""
    secure = {"secure_aggregation": {}, "eval": {"personalized": False}}
    served, simulated, clients = served_and_simulated(runs_dir, rounds=2, **secure)
    for got, want in zip(served.model.state_dict().values(), simulated.model.state_dict().values(), strict=True):
        assert torch.equal(got, want)
    metrics = {m["name"] for m in load_metrics(served.run_dir) if m["client_id"] is None}
    assert {"secagg_bytes_up", "secagg_bytes_down", "secagg_seconds"} <= metrics
    assert not any(e["kind"].startswith("secagg") for e in load_events(served.run_dir))
    for client in clients:
        client.join(timeout=60)


class LyingKeyClient(RemoteClient):
    """Trains honestly, then advertises a low-order public key (every agreement with it is zero)."""

    def prepare(self, config_yaml):
        super().prepare(config_yaml)
        honest = self.secure.advertise

        def lying(job, result):
            answer = honest(job, result)
            answer.update["secagg/mask_key"] = torch.zeros(32, dtype=torch.uint8)
            return answer

        self.secure.advertise = lying


def test_a_client_with_a_malformed_key_is_refused_and_the_round_completes_with_the_others(runs_dir):
    port = free_port()
    server, holder = serve_in_thread(runs_dir / "served", port, clients=4, rounds=1, secure_aggregation={})
    wait_until_listening(port)
    clients = [honest_client(port, cid) for cid in range(3)]
    liar = LyingKeyClient(f"127.0.0.1:{port}", {"backend": {"device": "cpu"}}, 3, quiet=True)
    thread = threading.Thread(target=liar.run, daemon=True)
    thread.start()
    server.join(timeout=900)
    assert "error" not in holder, holder.get("error")
    events = load_events(holder["result"].run_dir)
    assert [(e["client_id"], e["kind"]) for e in events] == [(3, "secagg_rejected")]
    survivors = [m["value"] for m in load_metrics(holder["result"].run_dir) if m["name"] == "secagg_survivors"]
    assert survivors == [3.0]
    for client in [*clients, thread]:
        client.join(timeout=60)
