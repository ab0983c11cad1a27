"""Where s3:// settings come from: options, AWS_* variables, ~/.aws files, in the SDKs' order."""

import pytest

from vhdport.errors import StoreError
from vhdport.stores import s3config

KEYS = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_url_gives_bucket_and_prefix():
    assert s3config.parse_url("s3://b/a/b/", "s3") == ("b", "a/b/")
    assert s3config.parse_url("s3://b", "s3") == ("b", "")
    for bad in ("s3://k:secret@b/p", "s3:///p", "s3://b/p?x=1", "s3://b/../p"):
        with pytest.raises(StoreError) as info:
            s3config.parse_url(bad, "s3")
        assert "secret" not in str(info.value)


def test_environment_variables(tmp_path):
    env = dict(KEYS, AWS_SESSION_TOKEN="sess-9f2e", AWS_DEFAULT_REGION="eu-west-3",
               AWS_ENDPOINT_URL="http://127.0.0.1:9/")
    s = s3config.resolve("s3://bkt/p", environ=env, home=str(tmp_path))
    assert (s.bucket, s.prefix, s.region, s.endpoint_url, s.addressing) == (
        "bkt", "p/", "eu-west-3", "http://127.0.0.1:9", "path")
    creds = s.credentials
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("AKENV", "env-secret",
                                                                         "sess-9f2e")
    assert "env-secret" not in repr(s) and "sess-9f2e" not in repr(s)


def test_aws_region_wins_over_default_region_and_s3_endpoint_over_generic(tmp_path):
    env = dict(KEYS, AWS_REGION="ap-south-1", AWS_DEFAULT_REGION="eu-west-3",
               AWS_ENDPOINT_URL="http://a:1", AWS_ENDPOINT_URL_S3="http://b:2")
    s = s3config.resolve("s3://bkt", environ=env, home=str(tmp_path))
    assert (s.region, s.endpoint_url) == ("ap-south-1", "http://b:2")


def test_options_win_over_everything(tmp_path):
    s = s3config.resolve("s3://bkt", endpoint_url="https://x:3", region="r1", access_key="AK",
                         secret_key="SK", environ=KEYS, home=str(tmp_path))
    assert (s.endpoint_url, s.region, s.credentials.access_key) == ("https://x:3", "r1", "AK")


def test_profile_from_shared_files(tmp_path):
    write(tmp_path / ".aws" / "credentials",
          "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = def-secret\n"
          "[ci]\naws_access_key_id = AKCI\naws_secret_access_key = ci-secret\n")
    write(tmp_path / ".aws" / "config",
          "[profile ci]\nregion = sa-east-1\nendpoint_url = http://127.0.0.1:7480\n")
    s = s3config.resolve("s3://bkt", environ={"AWS_PROFILE": "ci"}, home=str(tmp_path))
    assert (s.credentials.access_key, s.region, s.endpoint_url) == (
        "AKCI", "sa-east-1", "http://127.0.0.1:7480")
    s = s3config.resolve("s3://bkt", environ={}, home=str(tmp_path))
    assert (s.credentials.access_key, s.region) == ("AKDEF", "us-east-1")
    with pytest.raises(StoreError, match="AWS profile 'nope' not found"):
        s3config.resolve("s3://bkt", profile="nope", environ={}, home=str(tmp_path))


def test_env_keys_win_over_the_credentials_file(tmp_path):
    write(tmp_path / ".aws" / "credentials",
          "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = f\n")
    s = s3config.resolve("s3://bkt", environ=KEYS, home=str(tmp_path))
    assert s.credentials.access_key == "AKENV"


def test_no_credentials_says_what_to_set(tmp_path):
    with pytest.raises(StoreError, match="no S3 credentials for s3://bkt: set AWS_ACCESS_KEY_ID"):
        s3config.resolve("s3://bkt", environ={}, home=str(tmp_path))


def test_addressing_on_aws_and_elsewhere(tmp_path):
    s = s3config.resolve("s3://bkt", environ=KEYS, home=str(tmp_path), region="eu-west-1")
    assert (s.endpoint_url, s.addressing) == ("https://s3.eu-west-1.amazonaws.com", "virtual")
    s = s3config.resolve("s3://my.dotted.bkt", environ=KEYS, home=str(tmp_path))
    assert s.addressing == "path"
    s = s3config.resolve("s3://bkt", environ=KEYS, home=str(tmp_path), addressing="virtual",
                         endpoint_url="http://127.0.0.1:1")
    assert s.addressing == "virtual"
    with pytest.raises(StoreError, match="addressing style 'odd'"):
        s3config.resolve("s3://bkt", environ=KEYS, home=str(tmp_path), addressing="odd")
    with pytest.raises(StoreError, match="is not an http"):
        s3config.resolve("s3://bkt", environ=KEYS, home=str(tmp_path), endpoint_url="ftp://x")
