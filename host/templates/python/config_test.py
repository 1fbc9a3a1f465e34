import unittest

import logic


class ParseTest(unittest.TestCase):
    def test_lines_become_routes_and_an_empty_file_is_refused(self):
        self.assertEqual(
            logic.parse("# rack 1\n10.55.0.0/16 10.0.0.5 10.0.0.6\n"),
            [("10.55.0.0/16", ["10.0.0.5", "10.0.0.6"])],
        )
        with self.assertRaises(ValueError):
            logic.parse("")
        with self.assertRaisesRegex(ValueError, "line 1"):
            logic.parse("10.55.0.0/16\n")


if __name__ == "__main__":
    unittest.main()
