from pathlib import Path

from orders.app import create_app
from orders.settings import OrdersSettings
from shared.runtime import main

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(OrdersSettings, create_app, MIGRATIONS)


if __name__ == "__main__":
    run()
