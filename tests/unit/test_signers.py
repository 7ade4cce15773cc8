"""Key providers without a token: encrypted key files, secret sources, PKCS#11 URIs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fwdist import keys
from fwdist.errors import KeyFileError, SignerError
from fwdist.hsm import Pkcs11Uri
from fwdist.signers import KeyOptions, Secret, SecretSource, generate_key, open_signer

MESSAGE = b"fwdist signer test"


def never() -> bytes:
    raise AssertionError("asked for a passphrase an unencrypted key does not need")


def test_encrypted_key_file_round_trip(tmp_path: Path) -> None:
    private, public = keys.generate(tmp_path / "k", passphrase=b"correct horse")
    text = private.read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert private.stat().st_mode & 0o777 == 0o600
    assert keys.is_encrypted(private)
    key = keys.load_private(private, passphrase=lambda: b"correct horse")
    keys.load_public(public).verify(key.sign(MESSAGE), MESSAGE)


def test_wrong_passphrase_is_one_line(tmp_path: Path) -> None:
    private, _ = keys.generate(tmp_path / "k", passphrase=b"right")
    with pytest.raises(KeyFileError) as e:
        keys.load_private(private, passphrase=lambda: b"wrong")
    assert str(e.value) == f"wrong passphrase for {private} (or the file is damaged)"
    with pytest.raises(KeyFileError) as e:
        keys.load_private(private)
    assert str(e.value) == f"{private} is encrypted and no passphrase was given"


def test_unencrypted_key_files_still_load_without_asking(tmp_path: Path) -> None:
    private, public = keys.generate(tmp_path / "k")
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert not keys.is_encrypted(private)
    key = keys.load_private(private, passphrase=never)
    keys.load_public(public).verify(key.sign(MESSAGE), MESSAGE)


def test_empty_passphrase_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="an empty passphrase encrypts nothing"):
        keys.generate(tmp_path / "k", passphrase=b"")
    assert list(tmp_path.iterdir()) == []


def test_secret_from_env_file_and_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FWDIST_TEST_PASS", "from env")
    assert SecretSource(Secret.PASSPHRASE, env="FWDIST_TEST_PASS").read("k") == "from env"
    (tmp_path / "pass").write_text("from file\n")
    assert SecretSource(Secret.PASSPHRASE, file=tmp_path / "pass").read("k") == "from file"
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    source = SecretSource(Secret.PIN, prompt=prompt, interactive=lambda: True)
    assert source.read("pkcs11:token=t;object=k", confirm=True) == "typed"
    assert asked == ["PIN for pkcs11:token=t;object=k: ",
                     "PIN for pkcs11:token=t;object=k again: "]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (SecretSource(Secret.PASSPHRASE, env="FWDIST_TEST_UNSET"),
         "environment variable FWDIST_TEST_UNSET (the passphrase) is not set"),
        (SecretSource(Secret.PIN, interactive=lambda: False),
         "k needs a PIN and there is no terminal to ask on; give --pin-env VAR or "
         "--pin-file FILE"),
        (SecretSource(Secret.PASSPHRASE, prompt=lambda _: "", interactive=lambda: True),
         "the passphrase for k is empty"),
    ],
)
def test_secret_refusals(source: SecretSource, message: str,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FWDIST_TEST_UNSET", raising=False)
    with pytest.raises(SignerError) as e:
        source.read("k")
    assert str(e.value) == message


def test_confirmation_must_match(tmp_path: Path) -> None:
    answers = iter(["one", "two"])
    source = SecretSource(Secret.PASSPHRASE, prompt=lambda _: next(answers),
                          interactive=lambda: True)
    with pytest.raises(SignerError, match=r"the two passphrases for .* differ"):
        generate_key(str(tmp_path / "k"), KeyOptions(passphrase=source), encrypt=True)
    assert list(tmp_path.iterdir()) == []


def test_open_signer_on_an_encrypted_file(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("s3cret\n")
    options = KeyOptions(passphrase=SecretSource(Secret.PASSPHRASE, file=tmp_path / "pass"))
    public = generate_key(str(tmp_path / "k"), options, encrypt=True)
    signer = open_signer(str(tmp_path / "k"), options)
    assert keys.key_id(signer.public_key()) == keys.key_id(public)
    public.verify(signer.sign(MESSAGE), MESSAGE)


def test_uri_parses_every_attribute() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;"
        "serial=79434490ee2bac73;slot-id=7;object=release-1;id=%01%FF;type=private"
        "?module-path=/usr/lib/x.so&pin-source=file:/run/pin"
    )
    assert uri == Pkcs11Uri(token="My Token", manufacturer="SoftHSM project",
                            model="SoftHSM v2", serial="79434490ee2bac73", slot_id=7,
                            object="release-1", id=b"\x01\xff", type="private",
                            module_path="/usr/lib/x.so", pin_source="file:/run/pin")
    assert str(uri) == ("pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;"
                        "model=SoftHSM%20v2;serial=79434490ee2bac73;slot-id=7;object=release-1;"
                        "id=%01%ff;type=private?module-path=/usr/lib/x.so&"
                        "pin-source=file%3A/run/pin")


def test_pin_source_loses_to_an_explicit_pin_option(tmp_path: Path) -> None:
    (tmp_path / "uri-pin").write_text("1111\n")
    (tmp_path / "flag-pin").write_text("2222\n")
    uri = Pkcs11Uri.parse(f"pkcs11:token=t;object=k?pin-source=file:{tmp_path}/uri-pin")
    assert KeyOptions().pin_for(uri) == "1111"
    flagged = KeyOptions(pin=SecretSource(Secret.PIN, file=tmp_path / "flag-pin"))
    assert flagged.pin_for(uri) == "2222"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("token=t", "'token=t' is not a pkcs11: URI"),
        ("pkcs11:token=t;token=u", "pkcs11 URI names 'token' twice (pkcs11:token=t;token=u)"),
        ("pkcs11:token=t;colour=red", "pkcs11 URI attribute 'colour' is not one fwdist knows"),
        ("pkcs11:token", "pkcs11 URI attribute 'token' has no value (pkcs11:token)"),
        ("pkcs11:slot-id=x", "pkcs11 URI slot-id must be a number, got 'x'"),
        ("pkcs11:object=k;type=secret-key",
         "pkcs11 URI type=secret-key: a signing key is type=private"),
        ("pkcs11:object=%ff", "pkcs11 URI object= is not UTF-8 once decoded"),
        ("pkcs11:object=k?module-path=/x.so&token=t",
         "pkcs11 URI attribute 'token' is not one fwdist knows"),
        ("pkcs11:object=k?pin-value=1234",
         "pkcs11 URI has pin-value: a PIN on a command line is in every process listing; "
         "use --pin-env, --pin-file or pin-source"),
    ],
)
def test_bad_uris_are_one_line(text: str, message: str) -> None:
    with pytest.raises(SignerError) as e:
        Pkcs11Uri.parse(text)
    assert str(e.value) == message


labels = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                 max_size=20)


@given(
    token=st.none() | labels,
    serial=st.none() | st.text("0123456789abcdef", min_size=1, max_size=16),
    slot_id=st.none() | st.integers(0, 2**32 - 1),
    object_=st.none() | labels,
    id_=st.none() | st.binary(min_size=1, max_size=16),
    type_=st.sampled_from([None, "private", "public"]),
    module=st.none() | st.from_regex(r"/[a-z0-9/._-]{1,30}", fullmatch=True),
)
def test_uri_text_round_trips(token: str | None, serial: str | None, slot_id: int | None,
                              object_: str | None, id_: bytes | None, type_: str | None,
                              module: str | None) -> None:
    uri = Pkcs11Uri(token=token, serial=serial, slot_id=slot_id, object=object_, id=id_,
                    type=type_, module_path=module)
    assert Pkcs11Uri.parse(str(uri)) == uri


@given(st.text(max_size=80).map(lambda t: "pkcs11:" + t))
def test_any_uri_text_parses_or_raises_signer_error(text: str) -> None:
    try:
        uri = Pkcs11Uri.parse(text)
    except SignerError as e:
        assert "\n" not in str(e).replace(text, "")
    else:
        assert Pkcs11Uri.parse(str(uri)) == uri
