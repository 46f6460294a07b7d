"""mailnet.logs: the level filter every mailnet logger emits to."""

from twisted.logger import globalLogPublisher

from mailnet import logs


def test_level_changes_reach_loggers_at_once():
    # the level filter caches its answer per namespace and level: setLevel forgets it
    seen = []
    observer = seen.append
    log = logs.Logger("mailnet.test_level")
    globalLogPublisher.addObserver(observer)
    try:
        log.debug("one {n}", n=1)
        log.info("two")
        logs.setLevel("debug")
        log.debug("three")
        logs.setLevel("warn")
        log.info("four")
        log.warn("five")
    finally:
        logs.setLevel("info")
        globalLogPublisher.removeObserver(observer)
    ours = [e for e in seen if e.get("log_namespace") == "mailnet.test_level"]
    assert [e["log_format"] for e in ours] == ["two", "three", "five"]
    assert ours[0]["log_logger"] is log and ours[0]["log_level"].name == "info" and ours[0]["log_time"] > 0
