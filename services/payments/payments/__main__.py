from pathlib import Path

from payments.app import create_app
from payments.seed import seed
from payments.settings import PaymentsSettings
from shared.runtime import main

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(PaymentsSettings, create_app, MIGRATIONS, seed)


if __name__ == "__main__":
    run()
