"""The CSV import: a file (or pasted text), checked first, then applied.

"Check" is the import's dry run, "apply" the import itself, all or nothing (never
``best_effort``): both call ``Users.import_users`` as ``POST .../users/import`` does, with
the API's cap of 50 MB. Either shows every row with its line: what it does, or why it is
refused. An apply with a bad row writes nothing and shows the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import UploadFile

from api.console import i18n
from api.console.frame import PREFIX, ConsoleRoute, console, form_of, render, viewer_of
from api.problems import detail_of, row_of
from api.routes.tenants import actor_of, service_of
from api.routes.users import MAX_CSV_BYTES
from ca import csvio
from ca.errors import CAError, InvalidInput
from ca.service import ImportReport

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PAGE = "/t/{tenant}/import"
# the form around the file: its boundaries, the CSRF value, and pasted text (a form field,
# which the form parser holds to 1 MB)
FORM_OVERHEAD = 2 * 1024 * 1024
TOO_LARGE = f"the CSV file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB"
MAX_ROWS_SHOWN = 5000  # beyond this many rows, only the bad ones are listed
MAX_LINES_NAMED = 10  # the alert names this many bad lines, then counts the rest
# a checked file's text goes back into the text box, to be fixed there, when the box may
# post it again (the form parser holds a field to 1 MB)
MAX_TEXT_BACK = 1024 * 1024
FormData = Annotated[dict[str, Any], Depends(form_of)]

i18n.register({
    "import.title": ("CSV からユーザーを取り込む", "Import users from CSV"),
    "import.help": ("1 行目に列名を書いてください: login, email, name, groups (; で区切る), "
                    "secure_access (yes/no), kind (person/service)。既存のユーザーは書かれた列"
                    "だけが更新されます。文字コードは UTF-8 (Excel では「CSV UTF-8」で保存)。",
                    "The first line names the columns: login, email, name, groups (separated "
                    "by ;), secure_access (yes/no), kind (person/service). Existing users "
                    "change only in the columns given. The file must be UTF-8 (in Excel, "
                    "save as \"CSV UTF-8\")."),
    "import.file": ("CSV ファイル (50 MB まで)", "CSV file (up to 50 MB)"),
    "import.text": ("または CSV を貼り付け (1 MB まで)", "Or paste the CSV (up to 1 MB)"),
    "import.again": ("ファイルで確認した後に取り込む場合は、同じファイルをもう一度選んでください。",
                     "To apply a file you have checked, choose the same file again."),
    "import.check": ("確認する (書き込みません)", "Check (writes nothing)"),
    "import.apply": ("取り込む", "Apply"),
    "import.checked": ("確認しました。まだ何も書き込まれていません。",
                       "Checked: nothing has been written yet."),
    "import.checked_bad.one": ("{count} 行に問題があります ({lines})。直してからもう一度確認して"
                               "ください。",
                               "1 row has a problem ({lines}): fix it and check again."),
    "import.checked_bad.many": ("{count} 行に問題があります ({lines})。直してからもう一度確認して"
                                "ください。",
                                "{count} rows have problems ({lines}): fix them and check "
                                "again."),
    "import.refused.one": ("{count} 行に問題があるため、何も取り込んでいません ({lines})。",
                           "Nothing was imported: 1 row has a problem ({lines})."),
    "import.refused.many": ("{count} 行に問題があるため、何も取り込んでいません ({lines})。",
                            "Nothing was imported: {count} rows have problems ({lines})."),
    "import.lines.one": ("{lines} 行目", "line {lines}"),
    "import.lines.many": ("{lines} 行目", "lines {lines}"),
    "import.lines.more": ("{lines} 行目ほか {more} 行", "lines {lines} and {more} more"),
    "import.separator": ("、", ", "),
    "import.done": ("取り込みました: 新規 {created} 件、更新 {updated} 件、"
                    "変更なし {unchanged} 件。",
                    "Imported: {created} created, {updated} updated, {unchanged} unchanged."),
    "import.col.line": ("行", "Line"),
    "import.col.login": ("ログイン名", "Login"),
    "import.col.result": ("結果", "Result"),
    "import.col.problem": ("問題", "Problem"),
    "import.row.created": ("新規", "new"),
    "import.row.updated": ("更新", "update"),
    "import.row.unchanged": ("変更なし", "unchanged"),
    "import.row.bad": ("エラー", "error"),
    "import.hidden": ("問題のない {count} 行は一覧を省略しています。",
                      "{count} rows without a problem are not listed."),
    "import.error": ("取り込めません: {detail}", "Cannot import: {detail}"),
    "import.no_input": ("CSV ファイルを選ぶか、CSV を貼り付けてください。",
                        "Choose a CSV file or paste the CSV."),
    "import.bad_action": ("「確認する」か「取り込む」を押してください。",
                          "Press Check or Apply."),
})


@dataclass(frozen=True)
class Line:
    """One row of the report's table."""

    line: int
    login: str
    result: str  # created, updated, unchanged or bad
    problem: str = ""


async def declared_size(request: Request) -> None:
    """A body declared larger than the file's cap and its form is refused before it is
    read (the app refuses any body past 64 MB; this one's own cap is lower)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CSV_BYTES + FORM_OVERHEAD:
        raise InvalidInput(TOO_LARGE, field="file")


@router.get(PAGE, dependencies=[console()])
def import_page(request: Request, tenant: str) -> Response:
    service_of(request).hierarchy.tenant_settings(tenant)  # an unknown tenant is a 404
    return _page(request, text="")


@router.post(PAGE, dependencies=[Depends(declared_size), console()])
def run_import(request: Request, tenant: str, form: FormData) -> Response:
    """Check (a dry run) or apply the CSV, as ``POST .../users/import?dry_run=...``."""
    posted = form["_form"]
    action = posted.get("action")
    text = posted.get("text")
    text = text if isinstance(text, str) else ""
    translate = i18n.translator(viewer_of(request).lang)
    if action not in ("check", "apply"):
        return _page(request, text=text, status=400, error=translate("import.bad_action"))
    try:
        data = _csv_of(posted.get("file"), text)
        if data is None:
            return _page(request, text=text, status=400, error=translate("import.no_input"))
        report = service_of(request).users.import_users(
            tenant, data, dry_run=action == "check", best_effort=False,
            actor=actor_of(request))
        if len(data) <= MAX_TEXT_BACK:  # a checked file: its text, to fix in the box
            text = csvio.decode(data)
    except CAError as exc:
        status = row_of(exc).status
        if status in (401, 403, 404) or status >= 500:
            raise
        return _page(request, text=text, status=status,
                     error=translate("import.error", detail=detail_of(exc)))
    status = 400 if report.errors and action == "apply" else 200
    return _page(request, text=text, status=status, report=report)


def _csv_of(upload: object, text: str) -> bytes | None:
    """The CSV's bytes: the file when one was chosen, else the pasted text; None when
    neither was given."""
    if isinstance(upload, UploadFile) and upload.filename:
        upload.file.seek(0)
        data = upload.file.read(MAX_CSV_BYTES + 1)  # a worker thread: this route is sync
        if len(data) > MAX_CSV_BYTES:
            raise InvalidInput(TOO_LARGE, field="file")
        if not data:
            raise InvalidInput(f"the file {upload.filename[:64]!r} is empty", field="file")
        return data
    if not text.strip():
        return None
    return text.encode("utf-8")


def _page(request: Request, *, text: str, status: int = 200, error: str | None = None,
          report: ImportReport | None = None) -> Response:
    lines: list[Line] = []
    hidden = 0
    if report is not None:
        lines = sorted([Line(line, login, outcome) for line, login, outcome in report.rows]
                       + [Line(line, login, "bad", reason)
                          for line, login, reason in report.errors],
                       key=lambda row: row.line)
        if len(lines) > MAX_ROWS_SHOWN:
            hidden = sum(1 for row in lines if row.result != "bad")
            lines = [row for row in lines if row.result == "bad"]
    return render(request, "import.html", status=status, text=text, error=error,
                  report=report, lines=lines, hidden=hidden, columns=csvio.COLUMNS,
                  summary=_summary(request, report))


def _summary(request: Request, report: ImportReport | None) -> str:
    """The alert over a report with bad rows: how many, and which lines."""
    if report is None or not report.errors:
        return ""
    translate = i18n.translator(viewer_of(request).lang)
    bad = sorted({line for line, _, _ in report.errors})
    named = translate("import.separator").join(str(n) for n in bad[:MAX_LINES_NAMED])
    if len(bad) > MAX_LINES_NAMED:
        lines = translate("import.lines.more", lines=named, more=len(bad) - MAX_LINES_NAMED)
    else:
        lines = translate("import.lines." + ("one" if len(bad) == 1 else "many"), lines=named)
    count = len(report.errors)
    kind = "checked_bad" if report.dry_run else "refused"
    return translate(f"import.{kind}." + ("one" if count == 1 else "many"), count=count,
                     lines=lines)
