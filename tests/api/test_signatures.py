import pytest

from api.signatures import (
    SignatureError,
    shopify_signature,
    shopify_signature_verify,
    stripe_signature_header,
    stripe_signature_verify,
)

BODY = b'{"id": "evt_1"}'


def test_a_stripe_header_with_several_signatures_passes_when_one_matches():
    good = stripe_signature_header(payload=BODY, secret="s", timestamp=1000)
    header = f"{good},v1={'0' * 64},v0=ignored"
    stripe_signature_verify(payload=BODY, header=header, secret="s", tolerance=300, now=1100)


@pytest.mark.parametrize(
    ("header", "now"),
    [
        ("", 1000),
        ("t=abc,v1=00", 1000),
        ("t=1000", 1000),
        (f"t=1000,v1={'0' * 64}", 1000),
    ],
)
def test_a_malformed_or_wrong_stripe_header_fails(header, now):
    with pytest.raises(SignatureError):
        stripe_signature_verify(payload=BODY, header=header, secret="s", tolerance=300, now=now)


def test_a_stripe_signature_outside_the_tolerance_fails():
    header = stripe_signature_header(payload=BODY, secret="s", timestamp=1000)
    with pytest.raises(SignatureError, match="tolerance"):
        stripe_signature_verify(payload=BODY, header=header, secret="s", tolerance=300, now=1301)


def test_a_stripe_signature_of_another_body_fails():
    header = stripe_signature_header(payload=BODY, secret="s", timestamp=1000)
    with pytest.raises(SignatureError):
        stripe_signature_verify(
            payload=BODY + b" ", header=header, secret="s", tolerance=300, now=1000
        )


def test_the_shopify_signature_is_base64_hmac_of_the_raw_body():
    # Computed with openssl: printf '%s' BODY | openssl dgst -sha256 -hmac s -binary | base64
    expected = "6KmpPwhLCt8G3rQbwgFExsE73QREISFYZPZutYZUHRw="
    assert shopify_signature(payload=BODY, secret="s") == expected
    shopify_signature_verify(payload=BODY, header=expected, secret="s")
    with pytest.raises(SignatureError):
        shopify_signature_verify(payload=BODY, header="", secret="s")
    with pytest.raises(SignatureError):
        shopify_signature_verify(payload=BODY, header="ünïcode", secret="s")
