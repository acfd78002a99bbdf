"""API shapes. Field rules (lengths, digits, bounds, choices) come from the models."""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from rest_framework import serializers
from rest_framework.fields import get_error_detail
from rest_framework.settings import api_settings

from api.models import ApiToken
from crm.bounds import field_validators
from crm.models import (
    CUSTOMER_SENSITIVE_FIELDS,
    CUSTOMER_SENSITIVE_PERMISSION,
    Customer,
    Feedback,
    Purchase,
)
from crm.services import CUSTOMER_EDITABLE_FIELDS
from segmentation.models import CustomerPrediction, Membership, Segment
from segmentation.selectors import customer_membership

# Ids in paths and bodies: larger ones cannot exist and would overflow the database driver.
ID_MAX = 2**63 - 1


def drf_error(error: DjangoValidationError) -> serializers.ValidationError:
    """A service's ValidationError as DRF's, keeping the field names."""
    detail = get_error_detail(error)
    if isinstance(detail, dict) and NON_FIELD_ERRORS in detail:
        detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
    return serializers.ValidationError(detail=detail)


class BoundedModelSerializer(serializers.ModelSerializer):
    # A ModelSerializer whose fields refuse what the columns cannot hold (crm.bounds). A
    # comment, not a docstring: the schema would show a docstring as each shape's description.

    def build_standard_field(self, field_name, model_field):
        field_class, field_kwargs = super().build_standard_field(field_name, model_field)
        extra = [v for v in field_validators(model_field) if not _is_range(v)]
        if extra and not field_kwargs.get("read_only"):
            field_kwargs["validators"] = [*field_kwargs.get("validators", []), *extra]
        return field_class, field_kwargs


def _is_range(validator) -> bool:
    # Integer ranges stay as DRF derives them (min_value/max_value from the model's own
    # validators): the schema contract names them. The other bounds are checks only.
    return isinstance(validator, MinValueValidator | MaxValueValidator)


def _model_field(model, name: str, **kwargs) -> serializers.Field:
    """The serializer field ModelSerializer would build for model.name, under another name."""
    field_class, field_kwargs = BoundedModelSerializer().build_standard_field(
        name, model._meta.get_field(name)
    )
    field_kwargs.update(kwargs)
    return field_class(**field_kwargs)


class CustomerSerializer(BoundedModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    segment = serializers.SerializerMethodField()

    class Meta:
        model = Customer
        fields = [
            "id",
            *sorted(CUSTOMER_EDITABLE_FIELDS),
            "tags",
            "segment",
            "purchase_count",
            "total_spent",
            "first_purchase_at",
            "last_purchase_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "purchase_count",
            "total_spent",
            "first_purchase_at",
            "last_purchase_at",
            "created_at",
            "updated_at",
        ]
        # Uniqueness (e-mail, external id) is checked by crm.services.customer_create/update.
        validators = []

    def to_representation(self, customer: Customer):
        data = super().to_representation(customer)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        # A staff session without the permission does not see them; a token is the shop's
        # own integration and sees the record it writes.
        session = request is not None and not isinstance(request.auth, ApiToken)
        if session and not user.has_perm(CUSTOMER_SENSITIVE_PERMISSION):
            for name in CUSTOMER_SENSITIVE_FIELDS:
                data.pop(name, None)
        return data

    def get_segment(self, customer: Customer) -> int | None:
        membership = customer_membership(customer=customer)
        return membership.segment_id if membership else None


class CustomerUpsertSerializer(CustomerSerializer):
    """An upsert finds the customer by (external_source, external_id), else by e-mail."""

    def validate(self, attrs):
        if not attrs.get("external_id") and not attrs.get("email"):
            raise serializers.ValidationError(
                {"email": "Give an e-mail or an external_id to find the customer by."}
            )
        return attrs


class PurchaseSerializer(BoundedModelSerializer):
    customer_id = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, required=False, help_text="An existing customer's id."
    )
    customer_email = _model_field(
        Customer, "email", required=False, help_text="Found case-insensitively, else created."
    )
    customer_external_source = _model_field(Customer, "external_source", required=False)
    customer_external_id = _model_field(
        Customer,
        "external_id",
        required=False,
        help_text="With customer_external_source: found, else created.",
    )
    customer_name = _model_field(
        Customer, "name", required=False, write_only=True, help_text="For a new customer."
    )

    class Meta:
        model = Purchase
        fields = [
            "id",
            "customer_id",
            "customer_email",
            "customer_external_source",
            "customer_external_id",
            "customer_name",
            "kind",
            "amount",
            "currency",
            "purchased_at",
            "product",
            "category",
            "channel",
            "external_source",
            "external_order_id",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        # Idempotency by (external_source, external_order_id) is the service's, not a 400.
        validators = []

    def validate(self, attrs):
        refs = ("customer_id", "customer_email", "customer_external_id")
        if not any(attrs.get(ref) for ref in refs):
            raise serializers.ValidationError(
                {
                    "customer_id": "Name the customer: customer_id, customer_email or "
                    "customer_external_id."
                }
            )
        return attrs

    def to_representation(self, purchase: Purchase):
        data = super().to_representation(purchase)
        customer = purchase.customer
        data.update(
            customer_id=customer.pk,
            customer_email=customer.email,
            customer_external_source=customer.external_source,
            customer_external_id=customer.external_id,
        )
        return data


class PurchaseBulkSerializer(serializers.Serializer):
    purchases = PurchaseSerializer(many=True, allow_empty=False, max_length=1000)


class PurchaseWrittenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created = serializers.BooleanField(help_text="False when the order was already known.")


class PurchaseBulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    # Ids only, in the order sent: a full echo of 1,000 purchases cost a third of a request.
    purchases = PurchaseWrittenSerializer(many=True)


class FeedbackSerializer(BoundedModelSerializer):
    customer_id = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    purchase_id = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, required=False, allow_null=True
    )

    class Meta:
        model = Feedback
        fields = ["id", "customer_id", "purchase_id", "rating", "nps", "comment", "created_at"]
        read_only_fields = ["created_at"]
        validators = []


class SegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = [
            "id",
            "kind",
            "name",
            "description",
            "profile",
            "rules_text",
            "size",
            "share_customers",
            "revenue",
            "share_revenue",
            "color",
            "is_active",
            "created_at",
            "retired_at",
        ]
        # Read only; also keeps database-dependent integer bounds out of the schema.
        read_only_fields = fields


class MembershipSerializer(serializers.ModelSerializer):
    customer_id = serializers.IntegerField(read_only=True)
    segment_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Membership
        fields = ["customer_id", "segment_id", "reason", "pinned"]


class PredictionSerializer(serializers.ModelSerializer):
    """A customer's prediction from the last run that could fit the purchase models."""

    customer_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = CustomerPrediction
        fields = [
            "customer_id",
            "as_of",
            "p_alive",
            "expected_purchases_30d",
            "expected_purchases_90d",
            "expected_purchases_365d",
            "expected_order_value",
            "value_12m",
        ]
