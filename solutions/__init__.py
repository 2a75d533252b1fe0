"""Worked solutions to the lessons' code exercises, for instructors (one module per lesson).

Each module holds the functions and classes the lesson asks the student to write, under the
same names; ``effnet_lab.exercises.check`` accepts every one of them, and the notebook tests
run every lesson with these filled in. Keep this folder out of what students receive.
"""
