"""Model functions in SQL, end to end: mlproxy vs the bare fetch vs do-it-yourself."""
