from pathlib import Path

from shared.runtime import main
from shipping.app import create_app
from shipping.seed import seed
from shipping.settings import ShippingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(ShippingSettings, create_app, MIGRATIONS, seed)


if __name__ == "__main__":
    run()
