"""Webhook signature checks, as Stripe and Shopify document them. Knows nothing about Django."""

import base64
import hashlib
import hmac


class SignatureError(Exception):
    pass


def stripe_signature_verify(
    *, payload: bytes, header: str, secret: str, tolerance: int, now: float
) -> None:
    """`Stripe-Signature: t=<unix time>,v1=<hex hmac-sha256 of "t.payload">[,v1=...]`."""
    timestamp = None
    signatures = []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise SignatureError("The Stripe-Signature header is missing or malformed.")
    signed = timestamp.encode() + b"." + payload
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("No signature matches the payload.")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("The signature's timestamp is outside the tolerance.")


def stripe_signature_header(*, payload: bytes, secret: str, timestamp: int) -> str:
    """The header Stripe would send (for tests and for replaying stored events)."""
    signed = str(timestamp).encode() + b"." + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def shopify_signature(*, payload: bytes, secret: str) -> str:
    """`X-Shopify-Hmac-Sha256`: base64 of the hmac-sha256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), payload, hashlib.sha256).digest()).decode()


def shopify_signature_verify(*, payload: bytes, header: str, secret: str) -> None:
    expected = shopify_signature(payload=payload, secret=secret)
    if not header or not hmac.compare_digest(expected.encode(), header.encode()):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match the payload.")
