"""(stub until the lessons registry lands)"""
from dataclasses import dataclass
from typing import Callable

@dataclass(frozen=True)
class Lesson:
    key: str
    model: str
    text: str
    claim: str
    check: Callable = None

DEFAULTS: dict = {}
LESSONS: list[Lesson] = []

def lessons_for(page: str, model_name: str) -> list[Lesson]:
    return [l for l in LESSONS if l.key.split(".")[0] == page and l.model == model_name]
