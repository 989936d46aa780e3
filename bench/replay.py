"""placeholder"""
from bench.common import Ctx, Result


def run(ctx: Ctx) -> list[Result]:
    return []
