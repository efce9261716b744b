"""Container tests: the compose stack, sam local, and checks of the files that define them."""
