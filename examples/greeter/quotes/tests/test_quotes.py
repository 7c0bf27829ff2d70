import unittest

import quotes


class QuotesTest(unittest.TestCase):
    def test_pick_is_deterministic_with_a_seed(self):
        self.assertEqual(quotes.pick(1), quotes.pick(1))
        self.assertIn(quotes.pick(2), quotes.QUOTES)


if __name__ == "__main__":
    unittest.main()
