.PHONY: run test

# Start the app on the embedded defaults and print where to log in.
run:
	scripts/serve.sh

# Run the whole test suite.
test:
	scripts/test.sh
