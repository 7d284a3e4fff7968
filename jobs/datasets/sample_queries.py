"""Judged queries for the sample corpus: questions a Python programmer asks, and the one document
of the standard library's documentation that answers each.

Written by hand for this project. The queries say what the programmer wants in their own words,
not the docstring's, so BM25 cannot just match the answer's first sentence. Each names its answer
by the sample corpus id (``module.name``); the corpus is made from the running Python, so a query
whose answer that Python lacks is left out when the queries are written.
"""

from __future__ import annotations

SAMPLE_QUERIES: tuple[tuple[str, str], ...] = (
    ("heapq.nlargest", "top n biggest items of a list without sorting all of it"),
    ("heapq.merge", "combine several already sorted sequences lazily into one ordered stream"),
    ("itertools.groupby", "split consecutive runs of equal keys into groups"),
    ("itertools.permutations", "all orderings of r items picked from a sequence"),
    ("collections.Counter", "count how many times each word occurs"),
    ("collections.deque", "double ended queue with fast appends and pops at both ends"),
    ("functools.lru_cache", "memoize a function so repeated calls with the same arguments are cached"),
    ("functools.partial", "freeze some arguments of a function to make a new callable"),
    ("shutil.copytree", "copy a whole folder with all its files and subfolders"),
    ("shutil.rmtree", "delete a folder and everything inside it"),
    ("shutil.which", "find where an executable program is installed on the PATH"),
    ("os.makedirs", "create nested directories including missing parents"),
    ("os.walk", "iterate over every directory and file below a root folder"),
    ("os.path.splitext", "separate a file name from its extension"),
    ("os.path.expanduser", "turn ~ into the user's home directory in a path"),
    ("json.dumps", "convert a Python dict to a JSON string"),
    ("re.sub", "replace every match of a regular expression in a string"),
    ("textwrap.dedent", "strip the common indentation from a multi-line string"),
    ("difflib.unified_diff", "show the differences between two lists of lines like the diff tool"),
    ("secrets.token_hex", "generate a random hexadecimal token for a password reset link"),
    ("statistics.median", "middle value of a list of numbers"),
    ("math.isclose", "compare two floats for approximate equality with a tolerance"),
    ("time.monotonic", "a clock for measuring elapsed time that never jumps backwards"),
    ("tempfile.mkdtemp", "make a fresh temporary directory that I delete myself"),
    ("subprocess.run", "execute an external command and wait for its exit code and output"),
    ("shlex.quote", "escape a string so it is safe to paste into a shell command line"),
    ("urllib.parse.urlencode", "build the query string of a URL from a dictionary of parameters"),
    ("base64.b64encode", "encode binary bytes as base64 text"),
    ("zipfile.ZipFile", "read and write zip archives"),
    ("ipaddress.ip_network", "parse a subnet in CIDR notation like 192.168.0.0/24"),
    ("queue.Queue", "thread safe FIFO for passing work between producer and consumer threads"),
    ("copy.deepcopy", "duplicate a nested object so changes to the copy do not affect the original"),
    ("contextlib.suppress", "ignore a particular exception inside a with block"),
    ("dataclasses.asdict", "turn a dataclass instance into a plain dictionary"),
    ("logging.handlers.RotatingFileHandler", "log to a file that rolls over when it gets too large"),
    ("fnmatch.fnmatch", "check whether a file name matches a wildcard pattern like *.txt"),
    ("glob.glob", "list all files in a directory matching a pattern"),
    ("operator.itemgetter", "sort key that picks the second element of each tuple"),
    ("inspect.signature", "get the parameters and annotations a function accepts"),
    ("calendar.monthrange", "how many days are in a given month of a year"),
    ("string.Template", "simple string substitution with dollar sign placeholders"),
    ("html.escape", "make text safe to insert into an HTML page by escaping angle brackets"),
    ("mimetypes.guess_type", "work out the content type of a file from its name"),
    ("unittest.mock.patch", "temporarily replace an object with a fake during a test"),
    ("ast.literal_eval", "safely parse a string containing a Python literal like a list or dict"),
)
