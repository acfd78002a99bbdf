"""Which permission each staff page needs: one table, checked by PermissionRequiredMiddleware.

The admin checks its own model permissions (and crm.admin / segmentation.admin their custom
views and actions), the API its own (api.permissions); every other page is listed here by URL
name. A page missing from the table is refused to everyone but superusers, so a page added
later is closed until someone decides who may open it (tests/test_roles.py names it).
"""

# Pages about the user's own login, open to every staff user whatever their role.
EVERY_STAFF_USER = "every staff user"

# Namespaces whose views check permissions themselves.
SELF_CHECKED_NAMESPACES = ("admin", "api")

PAGE_PERMISSIONS: dict[str, str] = {
    "pages:today": "crm.view_customer",
    "pages:dashboard": "crm.view_purchase",
    # Demo data fills an empty database and starts the first run: the owner's decision.
    "pages:demo_load": "segmentation.run_segmentation",
    "pages:customer_detail": "crm.view_customer",
    "pages:customer_list": "crm.view_customer",
    "pages:customer_new": "crm.add_customer",
    # Tagging; the export inside it also asks for crm.export_customer (pages.views).
    "pages:customers_bulk": "crm.change_customer",
    "pages:customer_edit": "crm.change_customer",
    "pages:customer_sale_record": "crm.add_purchase",
    "pages:customer_activity_log": "crm.add_activity",
    "pages:customer_followup_create": "crm.add_followup",
    "pages:followup_done": "crm.change_followup",
    "pages:followup_snooze": "crm.change_followup",
    "pages:customer_offer_record": "offers.add_offerresponse",
    "pages:customer_feedback_add": "crm.add_feedback",
    "pages:customer_feedback_link_create": "crm.add_feedback",
    "pages:customer_segment_pin": "segmentation.change_membership",
    "pages:customer_segment_unpin": "segmentation.change_membership",
    "pages:feedback_answered": "crm.change_feedback",
    "pages:segment_detail": "segmentation.view_segment",
    # The business's name, currency and time zone: the Owner's.
    "pages:business_settings": "crm.change_businesssettings",
    # A customer's privacy rights: all their data leaves the product; their erasure.
    "pages:customer_data_export": "crm.export_customer",
    "pages:customer_erase": "crm.delete_customer",
    "offers:offer_list": "offers.view_offer",
    "offers:offer_detail": "offers.view_offer",
    "offers:offer_create": "offers.add_offer",
    "offers:offer_edit": "offers.change_offer",
    "offers:segment_offer_present": "offers.add_offerresponse",
    # E-mail to a segment, a test send to oneself: the owner's decisions.
    "offers:offer_email_send": "offers.add_delivery",
    "offers:offer_email_test": "offers.change_offer",
    # Names and e-mail addresses leave the product: an export.
    "offers:offer_recipients_csv": "crm.export_customer",
    "offers:offer_present_by_hand": "offers.add_offerresponse",
    "segmentation:segment_list": "segmentation.view_segment",
    "segmentation:segment_members_export": "crm.export_customer",
    "segmentation:segmentation_run_start": "segmentation.run_segmentation",
    # Everyone who sees the dashboard may watch a run's progress there.
    "segmentation:segmentation_run_status": "segmentation.view_segment",
    "accounts:two_step": EVERY_STAFF_USER,
    "accounts:two_step_start": EVERY_STAFF_USER,
    "accounts:two_step_confirm": EVERY_STAFF_USER,
    "accounts:recovery_codes_regenerate": EVERY_STAFF_USER,
    "accounts:two_step_turn_off": EVERY_STAFF_USER,
}

# Requests that leave an entry in the audit trail (config.middleware.AuditTrailMiddleware):
# URL name -> (method, action, object type, URL argument holding the object's id). Recorded
# when the page answered (200) or the POST went through (a redirect). Exports, imports and
# admin edits and run starts are recorded where they happen (crm.admin, crm.importers,
# segmentation.views and segmentation.admin).
AUDITED_REQUESTS: dict[str, tuple[str, str, str, str]] = {
    "pages:customer_detail": ("GET", "viewed", "crm.customer", "pk"),
    "admin:crm_customer_change": ("GET", "viewed", "crm.customer", "object_id"),
    "pages:customer_segment_pin": ("POST", "changed_segment", "crm.customer", "pk"),
    "pages:customer_segment_unpin": ("POST", "changed_segment", "crm.customer", "pk"),
}
