import unittest

import logic


class LogicTest(unittest.TestCase):
    def test_ports_are_checked(self):
        self.assertEqual(logic.port("22"), 22)
        for bad in ["0", "65536", "ssh", ""]:
            with self.assertRaises(ValueError):
                logic.port(bad)

    def test_an_answer_is_health(self):
        self.assertTrue(logic.healthy(True))
        self.assertFalse(logic.healthy(False))


if __name__ == "__main__":
    unittest.main()
