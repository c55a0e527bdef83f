from django.contrib import admin
from django.urls import path, re_path

from console import live
from scheduler import views
from scheduler.api import api, unknown_route

# The admin is the whole site for people: no "View site" link to a page that does not exist, and no side
# navigation, whose 300 px the node and job lists need at 1400 px (the home page lists every model).
admin.site.site_url = None
admin.site.enable_nav_sidebar = False

urlpatterns = [
    # admin_view: staff only, never cached.
    path("admin/cluster/", admin.site.admin_view(live.cluster_page), name="live_cluster"),
    path("admin/cluster/data", admin.site.admin_view(live.cluster_json), name="live_cluster_data"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", unknown_route),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("favicon.ico", views.favicon, name="favicon"),
]
