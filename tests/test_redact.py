"""One secret rule for the leaderboard's stored configs and the committed cluster files."""

from __future__ import annotations

import pytest

from geodistill.errors import ConfigError
from geodistill.platform.clusters.validate import validate_document
from geodistill.redact import find_secrets, names_secret, scrub_secrets, scrub_uri

# Key names each of the two former checks knew (the store's list, then the cluster validator's).
STORE_KEYS = [
    "hf_token",
    "password",
    "passwd",
    "db_passphrase",
    "client_secret",
    "db_credentials",
    "api_key",
    "API-KEY",
    "access_key",
    "private_key",
    "authorization",
    "aws_region_secretless",
    "session_key",
    "account_key",  # Azure: a storage account's key
    "AZURE_STORAGE_CONNECTION_STRING",
    "sig",  # a SAS token's signature, as a URI query parameter
]
CLUSTER_KEYS = ["secret", "password", "passwd", "access_key", "private_key_data", "token", "credential"]


@pytest.mark.parametrize("key", sorted(set(STORE_KEYS + CLUSTER_KEYS)))
def test_every_key_either_check_knew_is_a_secret_for_both(key):
    assert names_secret(key)
    assert scrub_secrets({key: "x", "lr": 0.1}) == {"lr": 0.1}
    assert find_secrets({"provider": {key: "x"}}) == [f"provider.{key}"]


@pytest.mark.parametrize(
    "key",
    ["lr", "backbone", "region", "ssh_user", "bucket", "views", "img_size", "credential_kind", "auth_type"],
)
def test_ordinary_keys_are_kept(key):
    assert not names_secret(key)
    assert scrub_secrets({key: "v"}) == {key: "v"}
    assert find_secrets({key: "v"}) == []


@pytest.mark.parametrize(
    "value",
    [
        "AKIAABCDEFGHIJKLMNOP",
        "ghp_" + "a" * 36,
        "hf_" + "b" * 30,
        "xoxb-1234567890-abcdefghijkl",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=bm90LWEta2V5;EndpointSuffix=core.windows.net",
    ],
)
def test_credential_shaped_values_are_found_under_any_key(value):
    assert scrub_secrets({"note": value, "tags": ["a", value]}) == {"tags": ["a"]}
    assert find_secrets({"note": value, "tags": ["a", value]}) == ["note", "tags[1]"]


def test_a_secret_key_with_no_value_is_not_a_leak_but_is_still_dropped_from_stored_config():
    doc = {"token": None, "password": "", "provider": {"aws_secret_access_key": "abc"}}
    assert find_secrets(doc) == ["provider.aws_secret_access_key"]
    assert scrub_secrets(doc) == {"provider": {}}


def test_a_launcher_auth_section_is_searched_inside():
    assert find_secrets({"auth": {"ssh_user": "ubuntu"}}) == []
    assert find_secrets({"auth": {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/k.pem"}}) == [
        "auth.ssh_private_key"
    ]


def test_the_cluster_validator_refuses_what_the_store_would_scrub():
    doc = {"cluster_name": "x", "provider": {"type": "local"}, "hf_token": "hf_" + "c" * 30}
    with pytest.raises(ConfigError, match=r"^hf_token holds a credential"):
        validate_document(doc)
    doc = {"cluster_name": "x", "provider": {"type": "local"}, "env": ["AKIAABCDEFGHIJKLMNOP"]}
    with pytest.raises(ConfigError, match=r"^env\[0\] holds a credential"):
        validate_document(doc)


def test_a_uri_keeps_its_store_options_and_loses_its_credentials():
    uri = (
        "s3://bucket/runs/epoch_0003?endpoint_override=127.0.0.1:9000&access_key=AK&secret_key=SK&scheme=http"
    )
    assert scrub_uri(uri) == "s3://bucket/runs/epoch_0003?endpoint_override=127.0.0.1:9000&scheme=http"
    assert scrub_uri("gs://b/k?access_token=ya29") == "gs://b/k"  # nothing left: no '?'
    assert (
        scrub_uri("s3://b/k?region=eu&x=AKIAABCDEFGHIJKLMNOP") == "s3://b/k?region=eu"
    )  # a key by its shape
    assert scrub_uri("/local/path?not=a_uri") == "/local/path?not=a_uri"
    assert scrub_secrets({"distill": {"teacher_checkpoint": uri}})["distill"][
        "teacher_checkpoint"
    ] == scrub_uri(uri)


def test_a_uri_loses_the_password_of_its_user_part():
    # pyarrow takes s3 keys (URL-encoded) and an Azure password in the user part; the user is kept (a
    # container on abfs's dfs form is needed to open the URI), the password is not.
    assert scrub_uri("s3://AKID:SE%2FCRET@bucket/runs/ck") == "s3://AKID@bucket/runs/ck"
    assert (
        scrub_uri("abfss://cont:pw@acct.dfs.core.windows.net/tune/ck?secret_key=x&y=1")
        == "abfss://cont@acct.dfs.core.windows.net/tune/ck?y=1"
    )
    assert scrub_uri("hdfs://user@namenode:8020/a") == "hdfs://user@namenode:8020/a"  # no password
    assert scrub_uri("s3://AKIAABCDEFGHIJKLMNOP:S%2FK@b/k") == "s3://b/k"  # a key id is a credential too
    assert scrub_uri("s3://bucket/a:b@c") == "s3://bucket/a:b@c"  # an '@' in the key is not a user part


def test_a_leaderboard_row_stores_no_credential_in_a_uri():
    from geodistill.leaderboard.columns import make_row

    uri = "s3://b/exp/trial/checkpoint_000002?endpoint_override=h:9000&secret_key=SK"
    row = make_row(
        experiment="e", trial_id="t", stage="student", checkpoint_uri=uri, teacher=uri, config_json={"u": uri}
    )
    assert "SK" not in row["checkpoint_uri"] + row["teacher"] + row["config_json"]
    assert row["checkpoint_uri"].endswith("?endpoint_override=h:9000")


def test_a_uri_keeps_the_kind_of_its_credential_and_loses_a_sas_signature():
    """``credential_kind=anonymous`` says how pyarrow opens the store (no secret in it): a row's URI
    that lost it would open with the default credential chain instead. A SAS token's ``sig`` is the secret."""
    anonymous = "abfss://c@acct.dfs.core.windows.net/tune/ck?credential_kind=anonymous"
    assert scrub_uri(anonymous) == anonymous
    sas = "https://acct.blob.core.windows.net/c/ck?sv=2022-11-02&sp=r&sig=c2lnbmF0dXJl%3D"
    assert scrub_uri(sas) == "https://acct.blob.core.windows.net/c/ck?sv=2022-11-02&sp=r"
    assert (
        scrub_uri("abfs://c@acct.dfs.core.windows.net/k?account_key=a2V5")
        == "abfs://c@acct.dfs.core.windows.net/k"
    )
