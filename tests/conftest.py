pytest_plugins = ["hookproxy.testing"]
