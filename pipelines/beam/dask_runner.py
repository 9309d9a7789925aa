"""Beam's Dask runner with its ParDo translation fixed: what `--runner DaskRunner` runs.

Beam 2.77's Dask runner (apache_beam/runners/dask/transform_evaluator.py, `ParDo.apply`) builds
one output receiver (`OneReceiver`, a list) and one DoFn instance per ParDo when it translates
the graph, and passes those same objects to every partition's `apply_dofn_to_bundle`. The list
is never cleared, so each partition returns its own outputs plus those of every partition that
ran before it in the same worker process, and partitions running on threads of one worker share
the DoFn instance (its start_bundle state included) while they run. Measured with a
`distributed.LocalCluster(processes=False)`: Create(16) -> Reshuffle -> Map -> a counting ParDo
over 8 partitions processed 72 elements, not 16. For `eercf extract` that meant rows written
twice (a video in two shards, which the completeness check refused: "63/5 videos").
It also collects a partition's outputs before finish_bundle, dropping what finish_bundle emits.

`BundleParDo` runs each partition as a real runner runs a bundle: a DoFn deserialised for it,
fresh receivers, setup/start_bundle/process/finish_bundle/teardown, and the outputs of
finish_bundle kept. `DaskRunner` is Beam's runner with that translation in place of Beam's
while it translates a pipeline (nothing else changes, and Beam's own runner class is left as it
is for anyone who names it).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from apache_beam import DoFn
from apache_beam import ParDo as BeamParDo
from apache_beam.internal import pickler
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask.transform_evaluator import (
    TRANSLATIONS,
    OneReceiver,
    ParDo,
    get_windowed_value,
)

_TRANSLATING = threading.Lock()


def run_bundle(items: Iterable[Any], serialized_fn: bytes, label: str, window_fn: Any,
               side_inputs: Any, args: list, kwargs: dict) -> list:
    """One Dask partition as one Beam bundle: its own DoFn copy and its own receivers; returns
    every output (process and finish_bundle), in order."""
    receivers = OneReceiver()
    handler = _OutputHandler(
        window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
        per_element_output_counter=None, output_batch_converter=None,
        process_yields_batches=False, process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(pickler.loads(serialized_fn)), handler,
        context=DoFnContext(label, state=None), side_inputs=side_inputs, input_args=args,
        input_kwargs=kwargs, user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return [value.value for value in receivers.values]


class BundleParDo(ParDo):
    """Beam's Dask ParDo translation, with per-partition DoFn and receivers (`run_bundle`)."""

    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = getattr(getattr(main_input, "windowing", None), "windowfn", None)
        return input_bag.map(get_windowed_value, window_fn).map_partitions(
            run_bundle, pickler.dumps(transform.fn), transform.label, window_fn, side_inputs,
            list(args), kwargs)


class DaskRunner(dask_runner.DaskRunner):
    """Beam's DaskRunner translating ParDo with `BundleParDo` (see the module docstring)."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        with _fixed_translations():
            return super().run_pipeline(pipeline, options)


class _fixed_translations:
    """While translating: Beam's translation table maps ParDo to BundleParDo (restored after,
    under a lock, so concurrent translations in one process see one table)."""

    def __enter__(self) -> None:
        _TRANSLATING.acquire()
        self.saved = TRANSLATIONS[BeamParDo]
        TRANSLATIONS[BeamParDo] = BundleParDo

    def __exit__(self, *exc: object) -> None:
        TRANSLATIONS[BeamParDo] = self.saved
        _TRANSLATING.release()

