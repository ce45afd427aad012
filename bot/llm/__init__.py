"""Language-model backends behind one interface, built on LangChain chat models."""
