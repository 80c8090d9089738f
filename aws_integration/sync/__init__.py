"""Reading an AWS organization into the access inventory: full sync and targeted refresh."""
