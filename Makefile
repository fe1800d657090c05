# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install brushwork, train and show the built-in example
#   make test   - create .venv, install brushwork with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so that a fresh machine gets the same PyTorch as CI.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint install clean

$(BIN)/brushwork: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

install: $(BIN)/brushwork

demo: install
	rm -rf runs/demo  # the demo is rebuilt from scratch each time (it holds nothing else)
	$(BIN)/brushwork demo --out runs/demo

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
