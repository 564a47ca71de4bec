"""A device's pipeline holds bounded state: after ten minutes of a real-time stream it holds what
it held after one (a gateway of 200 devices runs for days)."""
import gc
import tracemalloc

from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.sources.framed import FramedStream
from selfmis.edge_runtime.sources.rate import RateWatch
from selfmis.firmware_bridge.virtual_device import default_record_path
from selfmis.simulate import VirtualDevice


def _traced_kb_after(seconds: tuple) -> list:
    """Memory allocated by one device's decode -> rate watch -> pipeline chain, in kB, at each of
    ``seconds`` of a 500 Hz stream in 50-sample frames (10 a second, as the wearables send)."""
    framed, rate = FramedStream(), RateWatch("dev")
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        pipeline, marks, out = Pipeline(None), list(seconds), []
        for w in VirtualDevice.from_path(default_record_path(), loop=True, device_id="dev", seed=0).chunks():
            for chunk in framed.feed(w.data, t_arrival=1e9 + w.t, t_mono=1e3 + w.t):
                for item in rate.process(chunk):
                    pipeline.handle(item)
            if w.t >= marks[0]:
                gc.collect()
                out.append((tracemalloc.get_traced_memory()[0] - base) / 1e3)
                marks.pop(0)
                if not marks:
                    return out
    finally:
        tracemalloc.stop()


def test_ten_minutes_of_stream_hold_what_one_minute_held():
    one, ten = _traced_kb_after((60.0, 600.0))
    # per-chunk arrival times were kept up to 4096 chunks (+420 kB a device by 7 minutes);
    # only the chunks ending inside the window buffer are needed to time a decision
    assert ten - one < 40, (one, ten)
