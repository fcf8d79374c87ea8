"""Tasks: the loss and the evaluation of one kind of problem (DESIGN section 2)."""

from fedforge.tasks.base import TASKS, Headline, Task
from fedforge.tasks.classification import ClassificationTask, Outcomes
from fedforge.tasks.dense import DenseTask
from fedforge.tasks.detection import DetectionTask
from fedforge.tasks.segmentation import SegmentationTask
from fedforge.tasks.ssl import SSLNetwork, SSLTask

__all__ = [
    "TASKS",
    "ClassificationTask",
    "DenseTask",
    "DetectionTask",
    "Headline",
    "Outcomes",
    "SSLNetwork",
    "SSLTask",
    "SegmentationTask",
    "Task",
]
