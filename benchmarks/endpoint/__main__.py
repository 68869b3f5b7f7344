import warnings

# pgserver's import warns when XDG_RUNTIME_DIR is unset; it is harmless here.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from .run import main  # noqa: E402

raise SystemExit(main())
