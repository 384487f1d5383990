"""An operator's mistakes caught before they cost anything: catalogs that are not text files
or name a column twice, and a storage folder that does not exist."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from vidgo_stems.batch.catalog import batch_id_of, check_catalog
from vidgo_stems.errors import CatalogError, ConfigError, StorageError
from vidgo_stems.files.localfs import FileStorage
from vidgo_stems.files.shared import check_shared_storage
from vidgo_stems.keys import Keys


@pytest.mark.parametrize(
    "header",
    ["audio_url,title,audio_url", "audio_url,Title, title ", "id,audio_url,ID"],
)
def test_a_csv_column_named_twice_is_refused_naming_the_column(tmp_path, header):
    path = tmp_path / "twice.csv"
    path.write_text(f"{header}\nhttps://cdn.example.com/a.mp3,x,y\n")
    with pytest.raises(CatalogError, match="is named twice") as caught:
        check_catalog(path)
    repeated = header.split(",")[-1].strip().lower()
    assert repr(repeated) in caught.value.message and "\n" not in caught.value.message


def test_unnamed_csv_columns_are_not_a_repeat_but_a_named_one_is(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("audio_url,title,,\nhttps://cdn.example.com/a.mp3,x,,\n")
    assert check_catalog(path).valid == 1  # trailing commas, as spreadsheets export them
    path.write_text("audio_url,title,,title\nhttps://cdn.example.com/a.mp3,x,,y\n")
    with pytest.raises(CatalogError, match="'title' is named twice"):
        check_catalog(path)


def test_a_device_is_refused_before_it_is_read():
    with pytest.raises(CatalogError, match="is not a regular file"):
        batch_id_of(Path("/dev/zero"))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "catalog.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(outcome, check_catalog, fifo), daemon=True)
    reader.start()
    reader.join(timeout=30)  # a hang guard, not a speed check
    if reader.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive(), "reading a FIFO catalog waited for a writer"
    assert isinstance(outcome[0], CatalogError) and "not a regular file" in str(outcome[0])


def _capture(outcome: list[BaseException], call, *args) -> None:
    try:
        call(*args)
    except BaseException as exc:  # handed to the test
        outcome.append(exc)


def test_a_storage_folder_that_cannot_be_made_leaves_no_identity_in_redis(tmp_path, fake_redis):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    keys = Keys("t")
    with pytest.raises(StorageError):
        check_shared_storage(FileStorage(blocked / "stems"), fake_redis, keys)
    assert fake_redis.get(keys.storage_id) is None
    good = FileStorage(tmp_path / "good")
    assert check_shared_storage(good, fake_redis, keys) == fake_redis.get(keys.storage_id).decode()


def test_a_storage_folder_that_does_not_exist_is_named_as_missing(tmp_path, fake_redis):
    keys = Keys("t")
    check_shared_storage(FileStorage(tmp_path / "shared"), fake_redis, keys)
    missing = tmp_path / "not-mounted"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        check_shared_storage(FileStorage(missing), fake_redis, keys)
    assert str(missing) in caught.value.message
    assert "identity does not match" not in caught.value.message
