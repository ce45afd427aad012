"""Channel adapters: thin layers that turn platform input into IncomingMessage and back."""
