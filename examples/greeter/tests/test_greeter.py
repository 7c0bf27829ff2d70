import os
import unittest

import greeter


class GreetingTest(unittest.TestCase):
    def test_default_word(self):
        os.environ.pop("GREETING", None)
        self.assertEqual(greeter.greeting(), "hello!")

    def test_named(self):
        os.environ["GREETING"] = "hi"
        try:
            self.assertEqual(greeter.greeting("ana"), "hi, ana!")
        finally:
            del os.environ["GREETING"]


if __name__ == "__main__":
    unittest.main()
