"""The emulator's stem cache: keys, LRU bound in memory and in a folder, coalesced renders."""

from __future__ import annotations

import asyncio

from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.emulator.cache import RenderKey, StemCache
from vidgo_stems.emulator.state import EmulatorState


def config(**changes) -> EmulatorConfig:
    return EmulatorConfig(**changes)


def key(source: bytes, cfg: EmulatorConfig, stems=("vocals",), model="base") -> RenderKey:
    return RenderKey.of(source, cfg, list(stems), model)


def renderer(size: int = 100, fill: bytes = b"x"):
    calls = []

    def render() -> dict[str, bytes]:
        calls.append(1)
        return {"vocals": fill * size}

    return render, calls


def obtain(cache: StemCache, source: bytes, cfg: EmulatorConfig, size: int = 100) -> str:
    render, _ = renderer(size, fill=source[:1])
    return asyncio.run(cache.obtain(key(source, cfg), cfg, render))[1]


def test_the_key_covers_every_parameter_that_changes_the_bytes():
    base = config()
    digests = {
        key(b"a", base).digest(),
        key(b"b", base).digest(),
        key(b"a", base, stems=("bass",)).digest(),
        key(b"a", base, stems=("vocals", "bass")).digest(),
        key(b"a", base, stems=("bass", "vocals")).digest(),
        key(b"a", base, model="enhanced").digest(),
        key(b"a", config(stem_format="wav")).digest(),
        key(b"a", config(max_input_s=10)).digest(),
        key(b"a", config(faults={"lost_stems": ["vocals"]})).digest(),
    }
    assert len(digests) == 9
    # What does not change the bytes does not split the cache: settings the render ignores,
    # and lost stems the task does not ask for.
    assert key(b"a", base).digest() == key(b"a", config(run_s=0.0, seed=3)).digest()
    assert key(b"a", base).digest() == key(b"a", config(faults={"lost_stems": ["bass"]})).digest()


def test_a_second_obtain_is_a_hit_with_the_same_bytes():
    cache, cfg = StemCache(), config()
    render, calls = renderer()
    first, how_first = asyncio.run(cache.obtain(key(b"a", cfg), cfg, render))
    second, how_second = asyncio.run(cache.obtain(key(b"a", cfg), cfg, render))
    assert (how_first, how_second) == ("miss", "hit")
    assert second.stems == first.stems and second.sha256 == first.sha256
    assert len(calls) == 1
    assert cache.stats(cfg).items() >= {"hits": 1, "misses": 1, "renders": 1, "entries": 1}.items()


def test_the_memory_bound_evicts_the_least_recently_used():
    cache, cfg = StemCache(), config(stem_cache_bytes=250)
    assert [obtain(cache, s, cfg) for s in (b"a", b"b")] == ["miss", "miss"]
    assert obtain(cache, b"a", cfg) == "hit"  # a is now more recent than b
    assert obtain(cache, b"c", cfg) == "miss"  # 300 bytes > 250: b goes
    assert cache.evictions == 1
    assert [obtain(cache, s, cfg) for s in (b"a", b"c")] == ["hit", "hit"]
    assert obtain(cache, b"b", cfg) == "miss"
    assert cache.stats(cfg)["bytes"] <= 250


def test_the_folder_bound_evicts_the_least_recently_used_and_is_shared(tmp_path):
    # Entries on disk are their stems plus a header of a few hundred bytes: two fit, not three.
    cfg = config(stem_cache_bytes=5000, stem_cache_dir=str(tmp_path / "stems"))
    cache = StemCache()
    assert [obtain(cache, s, cfg, 2000) for s in (b"a", b"b")] == ["miss", "miss"]
    assert obtain(cache, b"a", cfg, 2000) == "hit"
    assert obtain(cache, b"c", cfg, 2000) == "miss"
    assert cache.evictions == 1 and cache.stats(cfg)["entries"] == 2
    other = StemCache()  # another emulator on the same folder
    assert [obtain(other, s, cfg, 2000) for s in (b"a", b"c", b"b")] == ["hit", "hit", "miss"]
    assert sum(f.stat().st_size for f in (tmp_path / "stems").iterdir()) <= 5000


def test_a_damaged_folder_entry_is_a_miss(tmp_path):
    cfg = config(stem_cache_dir=str(tmp_path))
    cache = StemCache()
    assert obtain(cache, b"a", cfg) == "miss"
    [entry] = tmp_path.iterdir()
    entry.write_bytes(entry.read_bytes()[:-1])
    assert obtain(cache, b"a", cfg) == "miss"
    assert obtain(cache, b"a", cfg) == "hit"


def test_an_entry_over_the_bound_and_a_cache_turned_off_store_nothing():
    cache = StemCache()
    assert [obtain(cache, b"a", config(stem_cache_bytes=50)) for _ in range(2)] == ["miss"] * 2
    off = config(stem_cache_bytes=0)
    assert [obtain(cache, b"a", off) for _ in range(2)] == ["off", "off"]
    assert cache.renders == 4 and cache.stats(off)["entries"] == 0


def test_shrinking_the_bound_at_run_time_evicts():
    state = EmulatorState(config())
    for source in (b"a", b"b", b"c"):
        obtain(state.stem_cache, source, state.config)
    state.reconfigure({"stem_cache_bytes": 150})
    assert state.stem_cache.stats(state.config)["entries"] == 1
    assert state.stem_cache.evictions == 2
    assert obtain(state.stem_cache, b"c", state.config) == "hit"


def test_renders_of_the_same_key_in_flight_are_coalesced():
    cache, cfg = StemCache(), config()
    render, calls = renderer()

    async def three_at_once():
        return await asyncio.gather(*(cache.obtain(key(b"a", cfg), cfg, render) for _ in range(3)))

    results = asyncio.run(three_at_once())
    assert sorted(how for _, how in results) == ["hit", "hit", "miss"]
    assert len(calls) == 1
    assert all(rendered.stems is results[0][0].stems for rendered, _ in results)


def test_a_failed_render_leaves_its_waiters_to_render_themselves():
    cache, cfg = StemCache(), config()
    attempts = []

    def flaky() -> dict[str, bytes]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("not decodable audio")
        return {"vocals": b"v"}

    async def two_at_once():
        return await asyncio.gather(
            *(cache.obtain(key(b"a", cfg), cfg, flaky) for _ in range(2)), return_exceptions=True
        )

    first, second = asyncio.run(two_at_once())
    assert isinstance(first, ValueError)
    assert second[1] == "miss" and second[0].stems == {"vocals": b"v"}
