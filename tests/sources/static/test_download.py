"""Downloads against a real HTTP server: Range resume, ETag changes, servers ignoring Range, giving up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cellfeatures.errors import SourceError
from cellfeatures.sources.static.download import HttpClient, NotFoundError, bucket_listing, download
from tests.static_server import BUCKET_PREFIX, StaticServer

PAYLOAD = os.urandom(3_000_000)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "root" / BUCKET_PREFIX / "v1300"
    folder.mkdir(parents=True)
    (folder / "t_merged.csv.gz").write_bytes(PAYLOAD)
    return tmp_path / "root"


def _url(server: StaticServer) -> str:
    return f"{server.base_url}/v1300/t_merged.csv.gz"


def test_dropped_bodies_resume_where_they_stopped_and_the_file_is_exact(served: Path, tmp_path: Path) -> None:
    with StaticServer(served, drop_bodies=3, drop_after=400_000) as server:
        client = HttpClient(backoff_s=0.0)
        result = download(client, client.head(_url(server)), tmp_path / "t.csv.gz")
        gets = server.data_gets("t_merged.csv.gz")
    assert (tmp_path / "t.csv.gz").read_bytes() == PAYLOAD
    assert [g.range for g in gets] == [None, "bytes=400000-", "bytes=800000-", "bytes=1200000-"]
    assert sum(g.sent for g in gets) == len(PAYLOAD), "no byte travels twice"
    assert result["requests"] == 4
    assert not list(tmp_path.glob("*.part*"))


def test_a_file_replaced_on_the_server_is_downloaded_again_from_zero(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "t.csv.gz"
    with StaticServer(served) as server:
        client = HttpClient(backoff_s=0.0)
        remote = client.head(_url(server))
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(PAYLOAD[:1000])
        meta = {"url": remote.url, "size": remote.size, "etag": "old"}
        (dest.with_name(dest.name + ".part.json")).write_text(json.dumps(meta))
        download(client, remote, dest)
        gets = server.data_gets("t_merged.csv.gz")
    assert gets[0].range is None, "a different ETag means the bytes on disk belong to another file"
    assert dest.read_bytes() == PAYLOAD


def test_a_server_that_ignores_range_gets_a_complete_file_not_a_spliced_one(served: Path, tmp_path: Path) -> None:
    with StaticServer(served, drop_bodies=1, drop_after=500_000, ignore_range=True) as server:
        client = HttpClient(backoff_s=0.0)
        download(client, client.head(_url(server)), tmp_path / "t.csv.gz")
    assert (tmp_path / "t.csv.gz").read_bytes() == PAYLOAD


def test_a_server_failing_every_time_is_given_up_on_naming_the_url(served: Path, tmp_path: Path) -> None:
    with StaticServer(served, fail_every=1) as server:
        client = HttpClient(retries=2, backoff_s=0.0)
        with pytest.raises(SourceError, match=r"t_merged.csv.gz: gave up after 3 attempts \(last: HTTP 503\)"):
            download(client, client.head(_url(server)), tmp_path / "t.csv.gz")
    assert not (tmp_path / "t.csv.gz").exists()


def test_a_body_that_keeps_ending_early_is_an_error_after_the_retries(served: Path, tmp_path: Path) -> None:
    with StaticServer(served, drop_bodies=100, drop_after=0) as server:
        client = HttpClient(retries=2, backoff_s=0.0)
        with pytest.raises(SourceError, match="download keeps failing at byte 0"):
            download(client, client.head(_url(server)), tmp_path / "t.csv.gz")


def test_missing_objects_are_404_and_the_listing_api_says_what_is_there(served: Path) -> None:
    with StaticServer(served) as server:
        client = HttpClient(backoff_s=0.0)
        with pytest.raises(NotFoundError, match="HTTP 404"):
            client.head(f"{server.base_url}/v1300/nothing.csv.gz")
        assert bucket_listing(client, f"{server.base_url}/v1300/") == ["t_merged.csv.gz"]
        assert bucket_listing(client, f"{server.url}/") is None
