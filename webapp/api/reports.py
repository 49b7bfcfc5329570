"""A person in the loop: readers report a page (it is painted or written again), whoever runs the server reads
the reports. Listing needs the API key: with no key set, nobody can list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from shared.errors import AuthenticationFailed, Conflict
from webapp.api.bodies import body_schema, read_body
from webapp.api.deps import RateLimit, StateDep, WorkshopDep, client_key
from webapp.api.links import accepted
from webapp.api.schemas import ReportAccepted, ReportBody, ReportList, ReportView
from webapp.jobs.models import PageReport

router = APIRouter(tags=["reports"])


def report_view(report: PageReport) -> ReportView:
    return ReportView(
        id=report.id, story_id=report.job_id, page=report.page, what=report.what, reason=report.reason, action=report.action, created_at=report.created_at,
    )


@router.post(
    "/stories/{story_id}/pages/{page}/report",
    status_code=202,
    response_model=ReportAccepted,
    dependencies=[RateLimit],
    summary="Report a page: it is painted (picture) or written (text) again, and the report is kept.",
    description="Page 0 is the cover (picture only). A report on a book still being made is kept, and answered 409.",
    responses={409: {"description": "The book is still being made: the report is kept, the page is not redone yet."}},
    openapi_extra=body_schema(ReportBody),
)
async def report_page(
    story_id: Annotated[str, Path(max_length=80)], page: Annotated[int, Path(ge=0, le=99)], request: Request, state: StateDep, workshop: WorkshopDep
) -> ReportAccepted:
    body = await read_body(request, ReportBody)
    if body.what == "text" and page == 0:
        raise Conflict("The cover has no text; report its picture (`what`: picture) or a page from 1.", param="what")
    record, report = workshop.stories.report_page(story_id, page, body.what, body.reason, client=client_key(request))
    return ReportAccepted(report=report_view(report), story=accepted(record, state.public_url))


@router.get("/reports", response_model=ReportList, summary="The newest page reports (needs FABULA_API_KEY to be set and sent).")
async def list_reports(
    state: StateDep, workshop: WorkshopDep, story_id: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReportList:
    if state.settings.api_key is None:
        raise AuthenticationFailed(
            "Reports are listed only for whoever runs this server: set FABULA_API_KEY and send it as `Authorization: Bearer <key>`.",
            param="Authorization",
        )
    return ReportList(reports=[report_view(report) for report in workshop.stories.reports(limit=limit, job_id=story_id)])
