"""Tasks: the loss and the evaluation of one kind of problem (DESIGN section 2)."""

from fedforge.tasks.base import TASKS, Task
from fedforge.tasks.classification import ClassificationTask, Outcomes
from fedforge.tasks.ssl import SSLNetwork, SSLTask

__all__ = ["TASKS", "ClassificationTask", "Outcomes", "SSLNetwork", "SSLTask", "Task"]
