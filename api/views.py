"""REST endpoints: parse, call one crm/api service or read, answer. Writes are audit-logged."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from api import selectors, services
from api.models import ApiToken
from api.serializers import (
    ID_MAX,
    CustomerSerializer,
    CustomerUpsertSerializer,
    FeedbackSerializer,
    MembershipSerializer,
    PredictionSerializer,
    PurchaseBulkResultSerializer,
    PurchaseBulkSerializer,
    PurchaseSerializer,
    SegmentSerializer,
    drf_error,
)
from crm import services as crm_services
from crm.audit import audit_actor, audit_record
from crm.models import AuditEntry, Customer, Purchase
from segmentation.models import CustomerPrediction, Membership, Segment

audit = logging.getLogger("api.audit")


def audit_write(request, *, what: str, ids) -> None:
    """One line per write (who: token prefix or session user; what; which rows) in the log,
    and one entry in the audit trail."""
    token = request.auth
    who = f"token={token.prefix}" if isinstance(token, ApiToken) else "session"
    ids = list(ids)
    audit.info(
        "%s user=%s %s %s %s ids=%s",
        who,
        request.user.get_username(),
        request.method,
        request.path,
        what,
        ids,
    )
    entity, _, verb = what.partition(".")
    audit_record(
        actor=audit_actor(request),
        action=AuditEntry.Action.CREATED if "create" in verb else AuditEntry.Action.EDITED,
        object_type=f"crm.{entity}",
        object_id=str(ids[0]) if len(ids) == 1 else "",
        count=len(ids),
        detail=f"API {what} ({who})",
    )


class IdCursorPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class CustomerFilterSerializer(serializers.Serializer):
    email = serializers.CharField(required=False, help_text="Exact, case-insensitive.")
    external_source = serializers.CharField(required=False)
    external_id = serializers.CharField(required=False)
    updated_since = serializers.DateTimeField(
        required=False, help_text="Customers changed at or after this time."
    )
    segment = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)


class DescriptionMetadata(SimpleMetadata):
    """OPTIONS answers name and description only: the schema documents the fields, and
    DRF's field listing looks up an object even on list routes (a 500 on /upsert/)."""

    def determine_actions(self, request, view):
        return {}


class ApiView:
    # DRF marks its views login_not_required, so the staff-login middleware lets token
    # clients through; authentication and permissions are DRF's (settings.REST_FRAMEWORK).
    metadata_class = DescriptionMetadata


@extend_schema_view(
    list=extend_schema(parameters=[CustomerFilterSerializer]),
    partial_update=extend_schema(request=CustomerSerializer),
)
class CustomerViewSet(
    ApiView,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = CustomerSerializer
    pagination_class = IdCursorPagination
    http_method_names = ["get", "post", "patch", "put", "head", "options"]

    def get_queryset(self):
        if self.action != "list":
            return selectors.customer_list()
        filters = CustomerFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.customer_list(**filters.validated_data)

    # PATCH only: a PUT replacing the whole customer would blank what the client left out
    # (PUT is the upsert, below).
    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        self.perform_update(serializer)
        return Response(
            self.get_serializer(self.get_queryset().get(pk=serializer.instance.pk)).data
        )

    def perform_create(self, serializer):
        try:
            customer = crm_services.customer_create(**serializer.validated_data)
        except DjangoValidationError as e:
            raise drf_error(e) from None
        serializer.instance = customer
        audit_write(self.request, what="customer.create", ids=[customer.pk])

    def perform_update(self, serializer):
        try:
            crm_services.customer_update(customer=serializer.instance, **serializer.validated_data)
        except DjangoValidationError as e:
            raise drf_error(e) from None
        audit_write(self.request, what="customer.update", ids=[serializer.instance.pk])

    @extend_schema(
        request=CustomerUpsertSerializer,
        responses={200: CustomerSerializer, 201: CustomerSerializer},
        description="Find the customer by (external_source, external_id), else by e-mail; "
        "update it (200) or create it (201).",
    )
    @action(detail=False, methods=["put"], url_path="upsert")
    def upsert(self, request):
        serializer = CustomerUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        customer = selectors.customer_find(
            external_source=values.get("external_source", ""),
            external_id=values.get("external_id", ""),
            email=values.get("email", ""),
        )
        try:
            if customer is None:
                customer = crm_services.customer_create(**values)
                created = True
            else:
                crm_services.customer_update(customer=customer, **values)
                created = False
        except DjangoValidationError as e:
            raise drf_error(e) from None
        audit_write(request, what="customer.upsert", ids=[customer.pk])
        customer = self.get_queryset().get(pk=customer.pk)
        return Response(
            CustomerSerializer(customer).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _purchases_write(request, items):
    try:
        return services.purchases_write(items=items)
    except services.ItemErrors as e:
        return Response(
            {"errors": [{"index": i, "field": f, "message": m} for i, f, m in e.errors]},
            status=status.HTTP_400_BAD_REQUEST,
        )
    except IntegrityError:
        # Another request recorded the same order or customer at the same moment.
        return Response(
            {"detail": "A concurrent request wrote the same order or customer; retry."},
            status=status.HTTP_409_CONFLICT,
        )


class PurchaseViewSet(ApiView, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PurchaseSerializer
    queryset = Purchase.objects.select_related("customer")

    @extend_schema(
        responses={
            200: OpenApiResponse(PurchaseSerializer, description="This order was known."),
            201: PurchaseSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="Field errors: {field: [messages]}."
            ),
        },
        description="Record a sale or a refund. Idempotent by (external_source, "
        "external_order_id): the same order sent again returns the existing purchase.",
    )
    def create(self, request):
        serializer = PurchaseSerializer(data=request.data)
        if not serializer.is_valid():
            raise serializers.ValidationError(serializer.errors)
        written = _purchases_write(request, [serializer.validated_data])
        if isinstance(written, Response):
            return written
        result = written[0]
        if result.created:
            audit_write(request, what="purchase.create", ids=[result.purchase.pk])
        return Response(
            PurchaseSerializer(result.purchase).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=PurchaseBulkSerializer,
        responses={
            200: PurchaseBulkResultSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="{errors: [{index, field, message}]} for invalid items, "
                "{purchases: message} for a body that is not a list of 1 to 1,000.",
            ),
        },
        description="Up to 1,000 purchases in one transaction: all are recorded or none. "
        "Errors name the item's index and field.",
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request):
        payload = request.data.get("purchases") if isinstance(request.data, dict) else None
        if not isinstance(payload, list):
            raise serializers.ValidationError({"purchases": "Give a list of purchases."})
        if not payload or len(payload) > services.BULK_MAX:
            raise serializers.ValidationError(
                {"purchases": f"Give from 1 to {services.BULK_MAX} purchases."}
            )
        serializer = PurchaseSerializer(data=payload, many=True)
        if not serializer.is_valid():
            errors = [
                {"index": index, "field": field, "message": str(message)}
                for index, item_errors in enumerate(serializer.errors)
                for field, messages in (
                    item_errors.items()
                    if isinstance(item_errors, dict)
                    else [("non_field_errors", item_errors)]
                )
                for message in (messages if isinstance(messages, list) else [messages])
            ]
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        written = _purchases_write(request, serializer.validated_data)
        if isinstance(written, Response):
            return written
        created = [w.purchase.pk for w in written if w.created]
        audit_write(request, what="purchase.bulk_create", ids=created)
        return Response(
            {
                "created": len(created),
                "existing": len(written) - len(created),
                "purchases": [{"id": w.purchase.pk, "created": w.created} for w in written],
            }
        )


class FeedbackViewSet(ApiView, mixins.CreateModelMixin, viewsets.GenericViewSet):
    serializer_class = FeedbackSerializer

    def perform_create(self, serializer):
        values = dict(serializer.validated_data)
        customer = Customer.objects.filter(pk=values.pop("customer_id")).first()
        if customer is None:
            raise serializers.ValidationError({"customer_id": "No customer with this id."})
        purchase = None
        if purchase_id := values.pop("purchase_id", None):
            purchase = Purchase.objects.filter(pk=purchase_id).first()
            if purchase is None:
                raise serializers.ValidationError({"purchase_id": "No purchase with this id."})
        try:
            feedback = crm_services.feedback_submit(
                customer=customer,
                purchase=purchase,
                source="import",
                **values,
            )
        except DjangoValidationError as e:
            raise drf_error(e) from None
        serializer.instance = feedback
        audit_write(self.request, what="feedback.create", ids=[feedback.pk])


class SegmentViewSet(ApiView, viewsets.ReadOnlyModelViewSet):
    serializer_class = SegmentSerializer
    queryset = Segment.objects.all()
    pagination_class = IdCursorPagination


class MembershipFilterSerializer(serializers.Serializer):
    segment = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)


@extend_schema_view(list=extend_schema(parameters=[MembershipFilterSerializer]))
class MembershipViewSet(ApiView, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = MembershipSerializer
    pagination_class = type(
        "MembershipPagination", (IdCursorPagination,), {"ordering": "customer_id"}
    )

    def get_queryset(self):
        filters = MembershipFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = Membership.objects.all()
        if "segment" in filters.validated_data:
            queryset = queryset.filter(segment_id=filters.validated_data["segment"])
        return queryset


class PredictionFilterSerializer(serializers.Serializer):
    customer = serializers.IntegerField(required=False, min_value=1, max_value=ID_MAX)


@extend_schema_view(list=extend_schema(parameters=[PredictionFilterSerializer]))
class PredictionViewSet(ApiView, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Predictions exist once a run had enough repeat customers to fit the models."""

    serializer_class = PredictionSerializer
    pagination_class = type(
        "PredictionPagination", (IdCursorPagination,), {"ordering": "customer_id"}
    )

    def get_queryset(self):
        filters = PredictionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = CustomerPrediction.objects.all()
        if "customer" in filters.validated_data:
            queryset = queryset.filter(customer_id=filters.validated_data["customer"])
        return queryset
