from django.apps import AppConfig


class SegmentationConfig(AppConfig):
    name = "segmentation"
    verbose_name = "Segmentation"

    def ready(self) -> None:
        # crm keeps purchase figures on the customer; memberships carry copies for sorted
        # member lists. crm sits below segmentation and must not import it, so it announces
        # the refresh with a signal and segmentation, the layer above, listens. Imported here:
        # the receiver's module loads models, which needs the app registry ready.
        from crm.signals import customer_stats_refreshed
        from segmentation.receivers import membership_figures_sync

        customer_stats_refreshed.connect(
            membership_figures_sync, dispatch_uid="segmentation.membership_figures_sync"
        )
