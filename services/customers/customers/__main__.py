from pathlib import Path

from customers.app import create_app
from customers.seed import seed
from customers.settings import CustomersSettings
from shared.runtime import main

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(CustomersSettings, create_app, MIGRATIONS, seed)


if __name__ == "__main__":
    run()
