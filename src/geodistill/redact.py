"""Secrets, one home: what names or looks like a credential, for the leaderboard and cluster files.

Two uses share one rule. The leaderboard stores each run's config in a shared table, so
``scrub_secrets`` drops every entry whose key names a secret (whatever its value) and every
string shaped like a credential. Cluster files are committed, so ``find_secrets`` lists the
entries ``scrub_secrets`` would drop that hold a value; the validator refuses the file. A
mapping under a key that names a secret is searched inside rather than judged whole (Ray's
launcher files have an ``auth:`` section naming the SSH user).

``SECRET_KEY`` names secrets, ``SECRET_VALUE`` matches credential-shaped strings. A URI's query
is judged the same way, parameter by parameter (``scrub_uri``): ``?endpoint_override=...&secret_key=...``
keeps its endpoint, not its key; the password of a URI's user part (``s3://KEY:SECRET@b/k``) goes too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

# The key names the store and the cluster validator once checked separately, with Azure's (account
# key, connection string, a SAS token's ``sig``).
SECRET_KEY = re.compile(
    r"(token|passw(or)?d|passphrase|secret|credential|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"account[_-]?key|connection[_-]?string|^sig$|auth|^aws_|session[_-]?key)",
    re.IGNORECASE,
)
# Names that match ``SECRET_KEY`` but say which kind of credential, or until when, not what it is:
# pyarrow's Azure ``credential_kind=anonymous`` and GCS ``credential_token_expiration``. Dropping
# them from a stored URI changes how it opens (anonymous becomes the default credential chain).
NOT_SECRET_KEY = re.compile(r"(_kind|_type|_expiration)$", re.IGNORECASE)
# Access-key ids, tokens with a known prefix, PEM private keys, Azure connection strings.
SECRET_VALUE = re.compile(
    r"^(AKIA|ASIA)[0-9A-Z]{16}$|^(ghp|gho|github_pat|hf|sk|xox[abp])[_-][A-Za-z0-9_-]{16,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|(^|;)\s*(AccountKey|SharedAccessSignature)="
)


def names_secret(key: Any) -> bool:
    """Whether a mapping key names a secret (``aws_secret_access_key``, ``hf_token``, ``password``,
    Azure's ``account_key`` and a SAS token's ``sig``...), not merely a kind of one (``credential_kind``)."""
    name = str(key)
    return bool(SECRET_KEY.search(name)) and not NOT_SECRET_KEY.search(name)


def looks_secret(value: Any) -> bool:
    """Whether a value is a string shaped like a credential (``AKIA...``, ``ghp_...``, a PEM key)."""
    return isinstance(value, str) and bool(SECRET_VALUE.search(value))


def scrub_uri(value: Any) -> Any:
    """``value`` without the password of its user part or the query parameters that name or look
    like secrets, when it is a URI; anything else as it is. Pyarrow URIs carry credentials in
    either place: ``s3://KEY:SECRET@bucket/k``, ``abfs://container:PASSWORD@account...``, ``?secret_key=``.
    """
    if not isinstance(value, str) or "://" not in value:
        return value
    head, mark, query = value.partition("?")
    scheme, _, rest = head.partition("://")
    authority, slash, path = rest.partition("/")
    user, at, host = authority.rpartition("@")
    name = user.partition(":")[0]
    if at and looks_secret(name):  # an access-key id (AKIA...): the whole user part goes
        head = f"{scheme}://{host}{slash}{path}"
    elif at and ":" in user:  # the user stays (an account, a container on abfs): not the password
        head = f"{scheme}://{name}@{host}{slash}{path}"
    if not mark:
        return head
    kept = []
    for piece in query.split("&"):  # judged decoded, kept as written
        name, _, raw = piece.partition("=")
        if not names_secret(unquote(name)) and not looks_secret(unquote(raw)):
            kept.append(piece)
    return f"{head}?{'&'.join(kept)}" if kept else head


def scrub_secrets(obj: Any) -> Any:
    """A copy of ``obj`` without keys that name secrets, strings that look like credentials, or
    URI query parameters that do (``scrub_uri``)."""
    if isinstance(obj, str):
        return scrub_uri(obj)
    if isinstance(obj, Mapping):
        return {
            str(k): scrub_secrets(v) for k, v in obj.items() if not names_secret(k) and not looks_secret(v)
        }
    if isinstance(obj, list | tuple):
        return [scrub_secrets(v) for v in obj if not looks_secret(v)]
    return obj


def find_secrets(obj: Any, where: str = "") -> list[str]:
    """Dotted paths (``provider.aws_secret_access_key``, ``env[2]``) of the secrets held in ``obj``.

    An entry holds a secret when its key names one and its value is not empty (a mapping is
    searched inside instead), or when its value looks like a credential.
    """
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            dotted = f"{where}.{key}" if where else str(key)
            if isinstance(value, Mapping):
                found += find_secrets(value, dotted)
            elif looks_secret(value) or (names_secret(key) and value not in (None, "", [])):
                found.append(dotted)
            else:
                found += find_secrets(value, dotted)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            if looks_secret(value):
                found.append(f"{where}[{i}]")
            else:
                found += find_secrets(value, f"{where}[{i}]")
    return found
