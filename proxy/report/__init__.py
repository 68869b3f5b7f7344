"""`mlproxy report`: one self-contained HTML page about one model.

load.py reads the model as the connecting user may see it, figures.py draws it
with matplotlib (the optional extra `report`), page.py writes the page, command.py
is the command line.
"""
