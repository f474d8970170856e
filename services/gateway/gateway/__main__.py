import sys

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from shared.runtime import main


def run() -> None:
    if sys.argv[1:2] == ["token"]:
        # `python -m gateway token`: an admin token for local use, signed with the configured key.
        print(mint_token(GatewaySettings()))
        return
    main(GatewaySettings, create_app, None)


if __name__ == "__main__":
    run()
