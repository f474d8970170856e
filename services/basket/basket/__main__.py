from pathlib import Path

from basket.app import create_app
from basket.seed import seed
from basket.settings import BasketSettings
from shared.runtime import main

MIGRATIONS = Path(__file__).parent / "migrations"


def run() -> None:
    main(BasketSettings, create_app, MIGRATIONS, seed)


if __name__ == "__main__":
    run()
