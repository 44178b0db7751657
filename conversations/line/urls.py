from django.urls import path

from . import views

urlpatterns = [
    path("webhook", views.webhook, name="line-default-webhook"),  # AIAvatarKit's URL
    path("line/<slug:slug>/webhook", views.webhook, name="line-webhook"),
    path("line/<slug:slug>/push", views.push, name="line-push"),
    path("line/<slug:slug>/start", views.start, name="line-start"),
]
