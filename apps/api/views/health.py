from __future__ import annotations

from django.db import connection
from rest_framework.permissions import AllowAny

from ..openapi import lago_operation
from rest_framework.response import Response
from rest_framework.views import APIView


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @lago_operation("health", response="Health")
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"version": "1.0.0", "message": "Success"})
