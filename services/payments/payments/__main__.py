from pathlib import Path

from payments.app import create_app
from payments.settings import PaymentsSettings
from shared.runtime import main

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(PaymentsSettings, create_app, MIGRATIONS)


if __name__ == "__main__":
    run()
