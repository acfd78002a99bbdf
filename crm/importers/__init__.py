"""Import customers and purchases from CSV: read, validate every row, then write in bulk.

Shared by the admin import pages and the `import_customers` / `import_purchases` commands.
Each import is one transaction: when any row is invalid nothing is written, unless the
caller asks for `only_valid`, in which case the invalid rows (or orders) are left out and
reported. A dry run does the whole import, then rolls it back.
"""

from crm.importers.columns import CUSTOMER_COLUMNS, CUSTOMER_PARSERS
from crm.importers.customers import customers_import
from crm.importers.presets import PRESETS, Preset, parse_mapping
from crm.importers.purchase_lines import PURCHASE_COLUMNS
from crm.importers.purchases import purchases_import
from crm.importers.report import ImportReport, RowError
from crm.importers.values import CellError

__all__ = [
    "CUSTOMER_COLUMNS",
    "CUSTOMER_PARSERS",
    "PRESETS",
    "PURCHASE_COLUMNS",
    "CellError",
    "ImportReport",
    "Preset",
    "RowError",
    "customers_import",
    "parse_mapping",
    "purchases_import",
]
