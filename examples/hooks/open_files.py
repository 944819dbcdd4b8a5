"""Open each file named on the command line; a denied open prints the PermissionError."""

import sys

for name in sys.argv[1:]:
    try:
        with open(name) as file:
            print(f"{name}: {len(file.read())} bytes")
    except PermissionError as error:
        print(f"{name}: {error}")
