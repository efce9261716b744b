# The two commands a newcomer needs: `make run` and `make test`. Both bootstrap what is missing.
.PHONY: run test stop status bootstrap build lint docs bench clean publish-dashboard \
	container-images compose-up compose-down compose-ps sam-local

VENV := .venv/bin
SAM := .tools/sam/bin/sam
PYTEST_FLAGS ?=
ifdef FAST
PYTEST_FLAGS += -m "not slow"
endif
# `make run` serves the sources (fast edit loop); `make run BUILT=1` serves `sam build`'s output.
ifdef BUILT
SERVE := built
else
SERVE := source
endif

bootstrap:
	@./devstack/bootstrap.sh

# sam build with Python 3.13 first on PATH (the python3.13 builder needs it); --cached rebuilds
# only what changed since the last build.
build: bootstrap
	@PATH="$(CURDIR)/.tools/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build --cached --parallel > .aws-sam-build.log 2>&1 \
		|| { cat .aws-sam-build.log; exit 1; }
	@echo "sam build: .aws-sam/build ($$(grep -c 'Building' .aws-sam-build.log) builds; log in .aws-sam-build.log)"

run: bootstrap $(if $(BUILT),build)
	@STOCKPRED_SERVE=$(SERVE) $(VENV)/stockpred up

stop:
	@if [ -x $(VENV)/stockpred ]; then $(VENV)/stockpred down; else echo "nothing to stop"; fi

status:
	@$(VENV)/stockpred services status

# The e2e suite runs against what `sam build` made, each function on Python 3.13 with Lambda's
# import path (devstack/runtime.py).
test: build
	$(VENV)/ruff check .
	@$(MAKE) --no-print-directory docs
	STOCKPRED_SERVE=built $(VENV)/python -m pytest $(PYTEST_FLAGS)

lint: bootstrap
	$(VENV)/ruff check .

# The docs site (mkdocs.yml, docs/) into .site/; --strict: a broken link or a page left out of the
# navigation fails it (never -q: quiet mode hides the warnings strict mode counts).
docs: bootstrap
	@NO_MKDOCS_2_WARNING=1 $(VENV)/mkdocs build --strict > .mkdocs-build.log 2>&1 \
		|| { cat .mkdocs-build.log; exit 1; }
	@echo "docs: .site/index.html (mkdocs build --strict; log in .mkdocs-build.log)"

bench: bootstrap
	@for b in bench/[a-z]*.py; do m=$$(basename $$b .py); echo "== bench.$$m"; $(VENV)/python -m bench.$$m || exit 1; done

# Upload web/ to a deployed stack's dashboard bucket and invalidate its CloudFront distribution:
#   make publish-dashboard STACK=stockpred
# (AWS credentials and region as for any AWS CLI call: AWS_PROFILE, AWS_REGION, ...)
publish-dashboard: bootstrap
	@test -n "$(STACK)" || { echo "usage: make publish-dashboard STACK=<CloudFormation stack name>" >&2; exit 2; }
	@$(VENV)/stockpred dashboard publish --stack "$(STACK)"

# The stack in containers (docker-compose.yml, podman-compose; images built from Debian's packages
# with no registry: containers/build.sh). `make compose-down KEEP_DATA=1` keeps the volumes.
container-images: bootstrap
	@./containers/build.sh

compose-up: bootstrap
	@./containers/compose.sh up

compose-down:
	@./containers/compose.sh $(if $(KEEP_DATA),--keep-data) down

compose-ps:
	@./containers/compose.sh ps

# `sam local start-api` on 127.0.0.1:3005 (warm containers of the locally built Lambda image),
# its functions on the compose stack's services (started if it is not up).
sam-local: build
	@./containers/sam-local.sh

clean: stop
	rm -rf .local .aws-sam .aws-sam-build.log .site .mkdocs-build.log
