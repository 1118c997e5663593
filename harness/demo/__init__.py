"""The built-in demo: synthetic support tickets, a tiny base LM and LoRA adapters with planted defects."""

from harness.demo.fixtures import FACTORY_VERSION, DemoFixtures, build_demo_fixtures, demo_cache_dir

__all__ = ["FACTORY_VERSION", "DemoFixtures", "build_demo_fixtures", "demo_cache_dir"]
