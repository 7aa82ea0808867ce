"""The envelope format, pure: no KMS. Any changed byte fails, never garbage."""

from __future__ import annotations

import os

import pytest

from reconciler.crypto import envelope as env

BINDING = env.Binding("stack", "vault", "secret")
ARN = "arn:aws:kms:us-east-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"


def sealed(value: bytes = b"the value") -> tuple[env.Envelope, bytes]:
    key = os.urandom(32)
    return env.seal(value, key, key_arn=ARN, algorithm=env.SYMMETRIC, binding=BINDING,
                    wrapped_key=b"wrapped-data-key-bytes"), key


def test_round_trip_and_one_line_text():
    envelope, key = sealed()
    text = envelope.to_string()
    assert text.startswith("rcl:v1:") and "\n" not in text and text.count(":") == 5
    parsed = env.Envelope.parse(text)
    assert parsed == envelope
    assert env.unseal(parsed, key) == b"the value"
    assert parsed.key_arn == ARN and parsed.binding == BINDING
    assert "the value" not in repr(parsed) and "wrapped" not in repr(parsed)


def test_fresh_nonce_every_time():
    key = os.urandom(32)
    a = env.seal(b"x", key, key_arn=ARN, algorithm=env.SYMMETRIC, binding=BINDING, wrapped_key=b"w")
    b = env.seal(b"x", key, key_arn=ARN, algorithm=env.SYMMETRIC, binding=BINDING, wrapped_key=b"w")
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_every_changed_character_is_refused():
    envelope, key = sealed()
    text = envelope.to_string()
    start = len("rcl:v1:")
    for index in range(start, len(text)):
        if text[index] == ":":
            continue
        replacement = "A" if text[index] != "A" else "B"
        tampered = text[:index] + replacement + text[index + 1:]
        try:
            parsed = env.Envelope.parse(tampered)
        except env.EnvelopeError:
            continue  # refused as malformed
        if parsed.wrapped_key != envelope.wrapped_key:
            continue  # KMS refuses a changed wrapped key (tested against the sandbox)
        with pytest.raises(env.EnvelopeError, match="does not decrypt"):
            env.unseal(parsed, key)


def test_binding_is_checked_with_a_clear_message():
    envelope, _ = sealed()
    with pytest.raises(env.EnvelopeError, match="bound to stack stack, vault vault, secret secret, not to "
                                                "stack stack, vault vault, secret other"):
        envelope.check_binding(env.Binding("stack", "vault", "other"))


@pytest.mark.parametrize("text,message", [
    ("plaintext", "not a reconciler envelope"),
    ("rcl:v1:abc", "expected 4 parts"),
    ("rcl:v1:!!!:a:b:c", "not valid"),
    ("rcl:v1:e30:YQ:YQ:YQ", "not valid"),  # header {} lacks fields
])
def test_malformed_envelopes(text, message):
    with pytest.raises(env.EnvelopeError, match=message):
        env.Envelope.parse(text)


def test_limits():
    with pytest.raises(env.EnvelopeError, match="larger than"):
        sealed(b"x" * (env.MAX_VALUE_BYTES + 1))
