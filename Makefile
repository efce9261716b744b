# The two commands a newcomer needs: `make run` and `make test`. Both bootstrap what is missing.
.PHONY: run test stop status bootstrap lint bench clean

VENV := .venv/bin
PYTEST_FLAGS ?=
ifdef FAST
PYTEST_FLAGS += -m "not slow"
endif

bootstrap:
	@./devstack/bootstrap.sh

run: bootstrap
	@$(VENV)/stockpred up

stop:
	@if [ -x $(VENV)/stockpred ]; then $(VENV)/stockpred down; else echo "nothing to stop"; fi

status:
	@$(VENV)/stockpred services status

test: bootstrap
	$(VENV)/ruff check .
	$(VENV)/python -m pytest $(PYTEST_FLAGS)

lint: bootstrap
	$(VENV)/ruff check .

bench: bootstrap
	@for b in bench/[a-z]*.py; do m=$$(basename $$b .py); echo "== bench.$$m"; $(VENV)/python -m bench.$$m || exit 1; done

clean: stop
	rm -rf .local
