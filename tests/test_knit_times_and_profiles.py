"""knit's loose times, Go durations, profiles and knitenv (spec §7.1–§7.3)."""

import base64

import pytest

from knit.profiles import ProfileError, default_name, env_path, load_env, parse_profile
from knit.timefmt import go_duration, parse_duration, parse_since


@pytest.mark.parametrize(
    "text",
    ["2021-01-01T00:00:00Z", "2021-01-01 00:00:00Z", "2021-01-01T00:00Z", "2021-01-01 00Z", "2021-01-01Z",
     "2021-01-01T09:00:00+09:00", "2021-01-01T00:00:00.000Z"],
)  # fmt: skip
def test_loose_since_forms_name_the_same_instant(text):
    assert parse_since(text) in ("2021-01-01T00:00:00.000+00:00", "2021-01-01T09:00:00.000+09:00")
    from datetime import datetime

    assert datetime.fromisoformat(parse_since(text)).timestamp() == 1609459200


def test_a_missing_offset_is_local_time(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse_since("2021-01-01 09") == "2021-01-01T09:00:00.000+09:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("bad", ["yesterday", "2021-13", "2021/01/01", "01-01-2021"])
def test_bad_since(bad):
    with pytest.raises(ValueError):
        parse_since(bad)


@pytest.mark.parametrize(
    "text, canonical", [("24h", "24h0m0s"), ("1.5h", "1h30m0s"), ("90s", "1m30s"), ("300ms", "300ms"), ("0", "0s")]
)
def test_durations_are_sent_in_gos_canonical_form(text, canonical):
    assert go_duration(parse_duration(text)) == canonical


def test_profiles_are_validated():
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    profile = parse_profile({"apiRoot": "https://10.0.0.3:30803/api/", "cert": {"ca": ca}}, "handout")
    assert profile.api_root == "https://10.0.0.3:30803/api" and profile.ca.startswith(b"-----BEGIN")
    for bad in ({"apiRoot": "/api"}, {"apiRoot": "ftp://x/api"}, {"apiRoot": "http://x/api", "cert": {"ca": "!!"}},
                {"apiRoot": "http://x/api", "cert": {"ca": base64.b64encode(b"nope").decode()}}, ["list"]):  # fmt: skip
        with pytest.raises(ProfileError):
            parse_profile(bad, "handout")


def test_project_files_are_found_walking_up(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert default_name(deep) == str(deep)
    (tmp_path / ".knitprofile").write_text("team\nignored")
    (tmp_path / "knitenv").write_text("tag: ['project:x', 'knit#id:y']\nresource: {cpu: 2, memory: 4Gi}\n")
    assert default_name(deep) == "team"
    env = load_env(env_path(None, deep))
    assert env.tags == ["project:x", "knit#id:y"] and env.resources == {"cpu": "2", "memory": "4Gi"}
    assert load_env(tmp_path / "missing").tags == []
    (tmp_path / "bad").write_text("tag: [nocolon]\n")
    with pytest.raises(ProfileError, match="KEY:VALUE"):
        load_env(tmp_path / "bad")


def test_the_store_is_written_as_json_and_read_back_as_yaml_or_json(tmp_path):
    import yaml

    from knit.profiles import Profile, load_profile, save_profile

    store = tmp_path / ".knit" / "profile"
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    save_profile(store, "a", Profile("https://10.0.0.3:30803/api", pem, "t0ken"))
    save_profile(store, "b", Profile("http://localhost:8080/api"))
    written = yaml.safe_load(store.read_text())  # Knitfab's knit reads it as YAML
    assert written["a"] == {"apiRoot": "https://10.0.0.3:30803/api", "cert": {"ca": base64.b64encode(pem).decode()},
                            "token": "t0ken"}  # fmt: skip
    assert load_profile("a", str(store)) == ("a", Profile("https://10.0.0.3:30803/api", pem, "t0ken"))
    store.write_text(yaml.safe_dump(written))  # as Knitfab's knit writes it: block YAML
    assert load_profile("b", str(store)) == ("b", Profile("http://localhost:8080/api"))
    store.write_text("{b: {apiRoot: 'http://localhost:8080/api'}}\n")  # YAML's flow style, not JSON
    assert load_profile("b", str(store))[1].api_root == "http://localhost:8080/api"
    store.write_text('["not", "a", "mapping"]')
    with pytest.raises(ProfileError, match="is broken: not a mapping"):
        load_profile("b", str(store))
