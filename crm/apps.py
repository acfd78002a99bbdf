from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _search_index_ensure(sender, using="default", **kwargs) -> None:
    from crm.search_index import search_index_ensure

    search_index_ensure(using=using)


class CrmConfig(AppConfig):
    name = "crm"
    verbose_name = "CRM"

    def ready(self) -> None:
        # After every migrate (and test-database flush): SQLite's search index and triggers.
        post_migrate.connect(_search_index_ensure, sender=self)
